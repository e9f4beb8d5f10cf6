"""Episodes on disk, readers for common formats, segment sampling, mixtures and augmentation."""
