"""Training: timm models by name, the one training loop, distillation, the loop on Ray Train."""
