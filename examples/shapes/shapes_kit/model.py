"""A small CNN of this project's own: `train.model: shapes_kit.model:small_cnn`.

cvops calls the function with the number of classes and checks what it returns: a torch module that answers
a batch of RGB images (any size here, by the global pooling) with one logit per class. Its weights are its
own (`train.pretrained: none`); `get_classifier()` names its head, as timm's models do, so that
`train.head_lr_multiplier` and `train.freeze_backbone_epochs` apply to it.
"""

from torch import Tensor, nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, width: int = 24) -> None:
        super().__init__()
        blocks = []
        for channels_in, channels_out in ((3, width), (width, 2 * width), (2 * width, 4 * width)):
            blocks += [
                nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.pool(self.features(images)).flatten(1))


def small_cnn(num_classes: int) -> nn.Module:
    return SmallCNN(num_classes)
