"`slowlearn fit` with the training set in a shuffled torch `DataLoader` with 2 workers instead of a `TensorLoader` (for test_checkpoint_killed)."
import sys
from torch.utils.data import DataLoader, TensorDataset
import slowlearn.experiments as E
from slowlearn.cli import main

def config_dls(cfg, _orig=E.config_dls):
    dls = _orig(cfg)
    dls.train = DataLoader(TensorDataset(*dls.train.tensors), batch_size=cfg.bs, shuffle=True, num_workers=2)
    return dls

if __name__ == '__main__':
    E.config_dls = config_dls
    main(sys.argv[1:])
