"""Data sources: the embedded digits, torchvision sets and image folders, read once and cached."""
