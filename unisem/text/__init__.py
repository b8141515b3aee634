"""Item text: building it from catalog fields, and encoding it with a cached sentence encoder."""
