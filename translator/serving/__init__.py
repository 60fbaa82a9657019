"""HTTP serving of a trained model or an export: `translator serve`."""
