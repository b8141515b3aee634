"""The recommender: SASRec over unified item vectors, its losses, and the saved model folder."""
from unisem.model.losses import JointLoss
from unisem.model.network import UnisemNetwork, build_network, unwrap
from unisem.model.recommender import Recommender
from unisem.model.storage import load_model, load_network, save_model

__all__ = ["JointLoss", "Recommender", "UnisemNetwork", "build_network", "load_model", "load_network", "save_model", "unwrap"]
