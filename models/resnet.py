"""The custom ResNet of ERA v2 Session 10 (David Page's "ResNet9" for CIFAR-10, as the course gives it).

Layer for layer the assignment's table (its torchsummary output, copied into
`tests/assignment_summary.txt`, which `tests/test_model.py` checks this model against):

    prep    conv 64                                              32x32
    layer1  conv 128 + maxpool, plus residual block (2 x conv 128)  16x16
    layer2  conv 256 + maxpool                                      8x8
    layer3  conv 512 + maxpool, plus residual block (2 x conv 512)  4x4
    head    maxpool 4, linear 10 (logits)

Every convolution is 3x3 with padding 1 and no bias, followed by (maxpool,) BatchNorm, ReLU and
Dropout. 6,573,130 trainable parameters.

The blocks subclass `nn.Sequential` on purpose: torchsummary prints a row for every module that is
not an `nn.Sequential`, so this layout prints exactly the assignment's 37 rows.
"""
from torch import nn


class ConvBlock(nn.Sequential):
    """Conv 3x3 (no bias), optional 2x2 max-pool, BatchNorm, ReLU, Dropout."""

    def __init__(self, in_channels, out_channels, dropout, pool=False):
        layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(dropout)]
        super().__init__(*layers)


class ResidualLayer(nn.Sequential):
    """X = ConvBlock(pool) ; R = two ConvBlocks ; output X + R(X)."""

    def __init__(self, in_channels, out_channels, dropout):
        super().__init__(
            ConvBlock(in_channels, out_channels, pool=True, dropout=dropout),
            nn.Sequential(ConvBlock(out_channels, out_channels, dropout=dropout),
                          ConvBlock(out_channels, out_channels, dropout=dropout)),
        )

    def forward(self, x):
        conv, residual = self[0], self[1]
        x = conv(x)
        return x + residual(x)


class ResNet(nn.Module):
    """The assignment's network; `dropout` is the rate after every convolution."""

    def __init__(self, num_classes=10, dropout=0.05):
        super().__init__()
        self.prep = ConvBlock(3, 64, dropout=dropout)
        self.layer1 = ResidualLayer(64, 128, dropout=dropout)
        self.layer2 = ConvBlock(128, 256, pool=True, dropout=dropout)
        self.layer3 = ResidualLayer(256, 512, dropout=dropout)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        # flatten as a tensor op, not nn.Flatten, so the summary keeps the table's rows
        return self.fc(self.pool(x).flatten(1))
