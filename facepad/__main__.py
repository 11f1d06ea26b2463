"""Allow `python -m facepad`, which `torchrun -m facepad train ...` needs."""

from facepad.cli import main

main()
