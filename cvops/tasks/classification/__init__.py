"""Image classification: a timm classifier, cross-entropy, accuracy and calibration evidence, served labels."""
