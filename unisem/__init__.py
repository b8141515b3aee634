"""unisem: a sequential recommender over unified item-ID and semantic-ID representations."""

__version__ = "0.1.0"
