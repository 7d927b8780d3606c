"The committed notebooks: no error output or traceback, and no image shown twice in one notebook (a stale or copied output)."
import hashlib, importlib.util, json, re
from pathlib import Path
import pytest

_spec = importlib.util.spec_from_file_location('run_nb', Path(__file__).parent.parent/'tools'/'run_nb.py')
run_nb = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(run_nb)
src_hash = run_nb.src_hash

NBS = sorted((Path(__file__).parent.parent/'nbs').glob('*.ipynb'))

def _outputs(nb):
    for i,c in enumerate(nb['cells']):
        for o in c.get('outputs', []): yield i, o

def _text(o): return ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))

@pytest.mark.parametrize('path', NBS, ids=lambda p: p.name)
def test_no_committed_errors(path):
    nb = json.loads(path.read_text())
    bad = [i for i,o in _outputs(nb) if o['output_type'] == 'error' or 'Traceback (most recent call last)' in _text(o)]
    assert not bad, f"{path.name}: cells {bad} show an error; fix the cell or re-run the notebook"

@pytest.mark.parametrize('path', NBS, ids=lambda p: p.name)
def test_no_image_shown_twice(path):
    seen, dup = {}, []
    for i,o in _outputs(json.loads(path.read_text())):
        if png := o.get('data', {}).get('image/png'):
            h = hashlib.sha256(''.join(png).encode()).hexdigest()
            if h in seen: dup.append((seen[h], i))
            seen.setdefault(h, i)
    assert not dup, f"{path.name}: cells {dup} show byte-identical images: one of them is not its own cell's output"

def test_checks_see_images_and_errors():
    "The notebooks have images to compare, so the duplicate check is not vacuous."
    assert sum(1 for p in NBS for _,o in _outputs(json.loads(p.read_text())) if 'image/png' in o.get('data', {})) > 10

def _src(c): return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])

def stamp_problems(nb):
    "Code cells whose outputs were not made by their current source in top-to-bottom order (stamps from `tools/run_nb.py`)."
    last, bad = 0, []
    for i,c in enumerate(nb['cells']):
        if c['cell_type'] != 'code' or not c.get('outputs'): continue
        ran = c.get('metadata', {}).get('ran')
        if not ran: bad.append(f"cell {i} has outputs but no run stamp")
        elif ran['src'] != src_hash(_src(c)): bad.append(f"cell {i} was edited after its outputs were made")
        elif ran['n'] <= last: bad.append(f"cell {i} ran before an earlier cell (stamp {ran['n']} after {last})")
        else: last = ran['n']
    return bad

@pytest.mark.parametrize('path', NBS, ids=lambda p: p.name)
def test_outputs_current_and_in_order(path):
    "Every code cell's outputs were made by its current source, top to bottom, unless the notebook says why not."
    nb = json.loads(path.read_text())
    if why := nb.get('metadata', {}).get('slowlearn', {}).get('out_of_order'): pytest.skip(why)
    bad = stamp_problems(nb)
    assert not bad, f"{path.name}: " + '; '.join(bad) + f"; re-run it: python tools/run_nb.py nbs/{path.name} [--slow]"

def test_stamp_check_catches_edits_reruns_and_unstamped_outputs():
    cell = lambda src, n: {'cell_type': 'code', 'source': src, 'outputs': [{'output_type': 'stream', 'text': 'x'}],
                           'metadata': {'ran': {'n': n, 'src': src_hash(src)}}}
    nb = {'cells': [cell('a=1', 1), {'cell_type': 'markdown', 'source': 'prose'}, cell('print(a)', 2)]}
    assert stamp_problems(nb) == []
    nb['cells'][2]['source'] = 'print(a+1)'                                   # edited after it ran
    assert stamp_problems(nb) == ["cell 2 was edited after its outputs were made"]
    nb['cells'][2] = cell('print(a)', 1)                                       # re-ran before cell 0
    assert stamp_problems(nb) == ["cell 2 ran before an earlier cell (stamp 1 after 1)"]
    del nb['cells'][2]['metadata']['ran']                                      # run in Jupyter, never stamped
    assert stamp_problems(nb) == ["cell 2 has outputs but no run stamp"]

LESSONS = [p for p in NBS if p.stem[:2].isdigit() and not p.stem.endswith('_package')]

@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.name)
def test_lesson_ends_with_exercises(path):
    "Every lesson has an `## Exercises` section, and it is the last section of the notebook."
    heads = [l for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'markdown'
             for l in _src(c).splitlines() if l.startswith('## ')]
    assert '## Exercises' in heads, f"{path.name} has no '## Exercises' section"
    assert heads[-1] == '## Exercises', f"{path.name}: '## Exercises' should be the last section, not {heads[-1]!r}"

_spec = importlib.util.spec_from_file_location('prose_numbers', Path(__file__).parent.parent/'tools'/'prose_numbers.py')
prose_numbers = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(prose_numbers)

@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.name)
def test_numbers_in_prose_come_from_cells(path):
    "Every decimal and every integer of three or more digits in a lesson's prose is printed or used by one of its cells."
    bad = prose_numbers.unbacked(path)
    assert not bad, (f"{path.name}: numbers in prose that no output or code of the notebook shows (print them from a "
                     f"cell, say it in words, or add a reasoned entry to EXCEPTIONS in tools/prose_numbers.py): "
                     + '; '.join(f"cell {i}: {x} in '...{ctx}...'" for i, x, ctx in bad))

def test_prose_number_check_catches_unbacked_numbers(tmp_path):
    md = lambda s: {'cell_type': 'markdown', 'source': s, 'metadata': {}}
    code = lambda s, out: {'cell_type': 'code', 'source': s, 'metadata': {}, 'outputs': [{'output_type': 'stream', 'text': out}]}
    nb = {'cells': [code('n = 10_000', '0.8125\n'), md('Accuracy 0.8125 on 10,000 images, as in $0.5$ and `1.25` and 2015.'),
                    md('Accuracy 0.7989 on 1,389 images per second (see [it](https://x.org/1.5)).'),
                    md('## Exercises\n\nAbout 7.1 times, or 3.3 times.')]}
    p = tmp_path/'01_x.ipynb'; p.write_text(json.dumps(nb))
    assert [x for _, x, _ in prose_numbers.unbacked(p, solutions='assert abs(s - 7.1) < 0.02')] == ['0.7989', '1,389', '3.3']
    q = tmp_path/'21_sched.ipynb'; q.write_text(json.dumps({'cells': [md('All 60,000 training images.')]}))   # a listed exception,
    assert prose_numbers.unbacked(q) == [] and prose_numbers.unbacked(q.rename(tmp_path/'21_other.ipynb'))   # by the lesson's name

@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.name)
def test_lesson_has_a_summary_before_its_exercises(path):
    "Every lesson sums up what it built, and the numbers that matter, in a `## Summary` section before `## Exercises`."
    heads = [l.strip() for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'markdown'
             for l in _src(c).splitlines() if l.startswith('## ')]
    assert '## Summary' in heads, f"{path.name} has no '## Summary' section"
    assert heads.index('## Summary') < heads.index('## Exercises'), f"{path.name}: '## Summary' should come before '## Exercises'"

@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.name)
def test_exercise_solutions_are_not_under_the_questions(path):
    "The `## Exercises` section holds questions only: solutions and their checks live in tests/test_exercises_*.py."
    cells = json.loads(path.read_text())['cells']
    at = next(i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and '## Exercises' in _src(c))
    code = [i for i, c in enumerate(cells[at:], at) if c['cell_type'] == 'code']
    assert not code, f"{path.name}: cells {code} under '## Exercises' are code; move solutions to tests/test_exercises_*.py"

def lesson_numbering_problems(stems, readme):
    "What is wrong with lessons `stems` (sorted, index excluded) and the README's table: gaps, letter suffixes, rows out of step."
    bad = [s for s in stems if not re.fullmatch(r'\d\d_[a-z]+', s)]
    if (nums := [s[:2] for s in stems]) != [f'{i:02d}' for i in range(len(stems))]: bad.append(f"numbers {nums} are not 00, 01, ... in a row")
    if (rows := re.findall(r'^\| `(\w+)` \|', readme, re.M)) != stems: bad.append(f"the README's lesson table lists {rows}, not {stems}")
    return bad

def test_lessons_are_numbered_00_on_without_gaps_or_letters_and_the_readme_lists_each():
    readme = (Path(__file__).parent.parent/'README.md').read_text()
    assert not (bad := lesson_numbering_problems([p.stem for p in NBS if p.stem != 'index'], readme)), '; '.join(bad)

def test_numbering_check_sees_a_gap_a_letter_and_a_missing_row():
    table = lambda *s: ''.join(f'| `{x}` | m | what |\n' for x in s)
    assert lesson_numbering_problems(['00_a', '01_b'], table('00_a', '01_b')) == []
    assert len(lesson_numbering_problems(['00_a', '01a_b', '03_c'], table('00_a', '01a_b', '03_c'))) == 2
    assert len(lesson_numbering_problems(['00_a', '01_b'], table('00_a'))) == 1


_rs = importlib.util.spec_from_file_location('reading_size', Path(__file__).parent.parent/'tools'/'reading_size.py')
reading_size = importlib.util.module_from_spec(_rs); _rs.loader.exec_module(reading_size)

def main_text_problems(cells, max_words=2500, max_lines=40):
    "What makes a lesson's main text (before '## Under the hood' or '## Exercises') heavy: too many words, or a code cell too long."
    main = reading_size._main(cells)
    words, _ = reading_size._size(main)
    bad = [f"{words:,} words of main text (at most {max_words:,})"] if words > max_words else []
    for i, c in enumerate(main):
        if c['cell_type'] == 'code' and (n := sum(1 for l in _src(c).splitlines() if l.strip())) > max_lines:
            bad.append(f"cell {i} has {n} code lines before 'Under the hood' (at most {max_lines})")
    return bad

@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.name)
def test_main_text_is_lean(path):
    "The main text ends at the smallest checked version: at most 2,500 words, no code cell over 40 lines; library code goes under '## Under the hood'."
    assert not (bad := main_text_problems(json.loads(path.read_text())['cells'])), f"{path.name}: " + '; '.join(bad)

def test_main_text_check_sees_long_text_and_long_cells():
    md = lambda s: {'cell_type': 'markdown', 'source': s}; code = lambda n: {'cell_type': 'code', 'source': 'x = 1\n'*n}
    assert main_text_problems([md('word ' * 2500), code(40)]) == []
    assert len(main_text_problems([md('word ' * 2501), code(41)])) == 2
    assert main_text_problems([md('## Under the hood'), code(200), md('word ' * 3000)]) == []   # back matter is not main text

@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.name)
def test_lesson_keeps_library_code_under_the_hood_between_summary_and_exercises(path):
    "Each lesson reads: main text, `## Summary`, `## Under the hood` (the library's hardened code), `## Exercises`."
    heads = [l.strip() for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'markdown'
             for l in _src(c).splitlines() if l.strip() in ('## Summary', '## Under the hood', '## Exercises')]
    assert heads == ['## Summary', '## Under the hood', '## Exercises'], f"{path.name}: its sections run {heads}"
