"""Object detection: FCOS on a timm backbone, box data, mAP evidence, post-processing, served boxes."""
