"""The file MLflow executes to build the pyfunc model ("models from code": no pickled Python object)."""
import mlflow

from unisem.registry.pyfunc_model import UnisemPyfunc

mlflow.models.set_model(UnisemPyfunc())
