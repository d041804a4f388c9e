"""imdd_build: turn public and private industrial-defect datasets into one 512x512 image-text corpus."""

__version__ = "0.1.0"
