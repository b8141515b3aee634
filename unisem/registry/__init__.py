"""MLflow tracking, the unisem pyfunc model, registration with aliases, and the promotion rule."""
