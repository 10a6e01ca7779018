"""What every trainer shares: configs, data loading, model loading, guards, cards, launching, running."""
