"""The data: CSV tables and classes, the data check, image decoding and caching, augmentation,
the torch dataset and loaders, fold splits, and the demo and MedMNIST importers."""
