"""build_model: families, groups (contract), input channels, class counts, weights loading."""

import pytest
import torch
from torch.utils.data import TensorDataset

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model, model_families


def bundle(in_channels=3, size=32, classes=10):
    ds = TensorDataset(torch.zeros(1, in_channels, size, size), torch.zeros(1, dtype=torch.long))
    return DataBundle(ds, ds, classes, in_channels, size)


def group_params(built):
    """Parameter name → group, with the module-path-boundary rule of models/spec.py."""
    owner = {}
    for name, _ in built.module.named_parameters():
        module_path = name.rsplit(".", 1)[0]
        for group, paths in built.groups.items():
            if any(module_path == p or module_path.startswith(p + ".") for p in paths):
                assert name not in owner, f"{name} in two groups"
                owner[name] = group
    return owner


@pytest.mark.parametrize("family,groups,n_params", [
    ("resnet18", ["stem", "layer1", "layer2", "layer3", "layer4", "fc"], 11181642),
    ("cifar_resnet20", ["stem", "layer1", "layer2", "layer3", "fc"], 272474),
    ("lenet_300_100", ["layer1", "layer2", "fc"], 32 * 32 * 3 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),
])
def test_groups_cover_every_parameter(family, groups, n_params):
    built = build_model(ModelConfig(family=family), bundle())
    assert list(built.groups) == groups
    owner = group_params(built)
    names = [n for n, _ in built.module.named_parameters()]
    assert set(owner) == set(names)
    assert sum(p.numel() for p in built.module.parameters()) == n_params
    assert built.module(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_depth(depth):
    model = build_model(ModelConfig(family=f"cifar_resnet{depth}"), bundle()).module
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth  # 3×3 convs + fc = depth (shortcut 1×1 convs not counted)
    shortcuts = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(shortcuts) == 2  # projection only where the shape changes


def test_in_channels_and_num_classes_follow_data_and_config():
    data = bundle(in_channels=1, size=8, classes=10)
    for family in ("resnet18", "cifar_resnet20", "lenet_300_100"):
        built = build_model(ModelConfig(family=family, num_classes=4), data)
        assert built.module(torch.randn(3, 1, 8, 8)).shape == (3, 4)
    assert build_model(ModelConfig(family="resnet18"), data).module.conv1.in_channels == 1


def test_width_multiplier():
    small = build_model(ModelConfig(family="cifar_resnet20", width=0.5), bundle()).module
    assert small.conv1.out_channels == 8 and small.fc.in_features == 32
    wide = build_model(ModelConfig(family="resnet18", width=0.5), bundle()).module
    assert wide.layer4[-1].conv2.out_channels == 256


def test_init_follows_global_seed():
    torch.manual_seed(3)
    a = build_model(ModelConfig(family="cifar_resnet20"), bundle()).module.state_dict()
    torch.manual_seed(3)
    b = build_model(ModelConfig(family="cifar_resnet20"), bundle()).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_family_suggests_closest():
    with pytest.raises(TicketlabError, match="did you mean 'cifar_resnet20'"):
        build_model(ModelConfig(family="cifar_resnt20"), bundle())
    assert "fasterrcnn" in model_families()


def test_weights_are_loaded_and_new_head_allowed(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = build_model(ModelConfig(family="resnet18", num_classes=1000), bundle()).module
    path = tmp_path / "r18.safetensors"
    save_file(src.state_dict(), str(path))
    built = build_model(ModelConfig(family="resnet18", weights=str(path)), bundle(classes=10))
    got = built.module.state_dict()
    assert torch.equal(got["layer3.0.conv1.weight"], src.state_dict()["layer3.0.conv1.weight"])
    assert got["fc.weight"].shape == (10, 512)  # fresh head for the new label set
    gray = build_model(ModelConfig(family="resnet18", weights=str(path)), bundle(in_channels=1))
    rgb = src.state_dict()["conv1.weight"]  # a 1-channel stem takes RGB weights as their sum (stem_channels.py)
    assert torch.allclose(gray.module.state_dict()["conv1.weight"], rgb.sum(dim=1, keepdim=True))
    with pytest.raises(TicketlabError, match="conv1.weight"):  # 2 channels: no adaptation, one clear error
        build_model(ModelConfig(family="resnet18", weights=str(path)), bundle(in_channels=2))
