"""facepad: embeddings and 0-1 scores of facial fat-pad regions."""
__version__ = "0.1.0"
