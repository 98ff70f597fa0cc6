"""`deploy.flops.count_macs`: multiply-accumulates of convs and linear layers over the weights that
remain, against a case counted by hand and torchvision's own metadata for ResNet-18."""

import torch
import torchvision
from torch import nn

from ticketlab.deploy.flops import count_macs


def test_hand_counted_conv_and_linear_with_zeros():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    with torch.no_grad():
        model[0].weight[1] = 0            # one whole filter gone: 2·3·3 = 18 weights
        model[0].weight[0, 0, 0, 0] = 0   # and one more weight
        model[3].weight[:, :10] = 0       # 5·10 weights of the linear layer
    count = count_macs(model, torch.randn(2, 2, 8, 8))
    # conv: 3 filters of 2·3·3 = 54 weights, output 4×4 per image, batch 2 → 32 positions
    # linear: 5·48 = 240 weights, one position per image → 2
    assert count.layers["0"] == (54 * 32, (54 - 18 - 1) * 32)
    assert count.layers["3"] == (240 * 2, (240 - 50) * 2)
    assert (count.dense, count.remaining) == (54 * 32 + 240 * 2, 35 * 32 + 190 * 2)


def test_grouped_conv_counts_the_inputs_each_filter_reads():
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False)  # weight 8×1×3×3
    count = count_macs(conv, torch.randn(1, 4, 5, 5))
    assert count.dense == 8 * 1 * 9 * 25


def test_resnet18_matches_torchvision_metadata():
    # torchvision lists ResNet-18 at 1.814 "GFLOPS" for 224×224: its convs and fc, counted as MACs
    expected = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9
    count = count_macs(torchvision.models.resnet18().eval(), torch.randn(1, 3, 224, 224))
    assert abs(count.dense - expected) / expected < 1e-3
    assert count.remaining == count.dense  # a fresh init has no zero weights


def test_a_layer_called_twice_counts_twice():
    lin = nn.Linear(4, 4, bias=False)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x))

    assert count_macs(Twice(), torch.randn(3, 4)).dense == 2 * 16 * 3
