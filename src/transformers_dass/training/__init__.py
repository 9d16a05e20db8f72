"""Training: knowledge distillation with transformers' Trainer (`distillation`), datasets and collation (`data`),
tagging metrics (`metrics`)."""
