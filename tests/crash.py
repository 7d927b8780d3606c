"A crash on purpose, for the checkpoint-and-resume tests: `CrashAt(n)` raises `Crash` after training batch `n`."
from slowlearn.learner import Callback

class Crash(Exception): pass

class CrashAt(Callback):
    "Raise `Crash` after the training batch that brings `learn.train_iter` to `at`; last, so every other callback has run."
    order = 1000
    def __init__(self, at): self.at = at
    def after_batch(self, learn):
        if learn.training and learn.train_iter == self.at: raise Crash()
