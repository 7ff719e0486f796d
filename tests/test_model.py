"""The model against the assignment's layer table (tests/assignment_summary.txt, the torchsummary
output the assignment gives)."""
import re
from pathlib import Path

import torch
from torchsummary import summary

from models.resnet import ResNet

ROW = re.compile(r"^\s*(\w+)-(\d+)\s+(\[[^\]]*\])\s+([\d,]+)\s*$")
TOTAL = re.compile(r"^(Total params|Trainable params|Non-trainable params|Params size \(MB\)"
                   r"|Forward/backward pass size \(MB\)): ([\d.,]+)$")


def parse_summary(text):
    """(rows as (type, index, shape, params), totals) from torchsummary's printed table."""
    rows = [m.groups() for m in map(ROW.match, text.splitlines()) if m]
    totals = dict(m.groups() for m in map(TOTAL.match, (l.strip() for l in text.splitlines())) if m)
    return rows, totals


def test_summary_equals_assignment_table(capsys):
    summary(ResNet(), (3, 32, 32), device="cpu")
    printed = capsys.readouterr().out
    expected = (Path(__file__).parent / "assignment_summary.txt").read_text()
    rows, totals = parse_summary(printed)
    expected_rows, expected_totals = parse_summary(expected)
    assert len(expected_rows) == 37 and expected_totals["Total params"] == "6,573,130"
    assert rows == expected_rows
    assert totals == expected_totals


def test_outputs_are_logits_of_the_ten_classes():
    out = ResNet().eval()(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    # logits, not probabilities: no softmax at the end
    assert not torch.allclose(out.exp().sum(1), torch.ones(4))


def test_convolutions_are_3x3_without_bias():
    convs = [m for m in ResNet().modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)


def test_residual_is_added_to_the_layer_output():
    layer = ResNet().layer1.eval()
    x = torch.randn(2, 64, 32, 32)
    conv, residual = layer[0], layer[1]
    expected = conv(x) + residual(conv(x))
    torch.testing.assert_close(layer(x), expected)


def test_dropout_rate_is_an_argument():
    rates = {m.p for m in ResNet(dropout=0.2).modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.2}
