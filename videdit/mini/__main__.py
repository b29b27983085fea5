"""``python -m videdit.mini train|eval ...``: the training and evaluation entry points."""

import sys

if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "train":
        from .train import main
    elif cmd == "eval":
        from .eval import main
    else:
        sys.exit("usage: python -m videdit.mini train|eval [options]  (see --help of each)")
    main(sys.argv[2:])
