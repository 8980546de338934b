"""Unit tests of each auth scheme's pure `sign()`: no network, published vectors."""
