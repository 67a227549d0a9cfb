"""End-to-end tests of `tensord.nn.Module` and `Parameter`: what torch.nn.Module users rely on.

Registration by assignment, traversal (`parameters`, `named_modules`, ...),
train/eval, `zero_grad`, `state_dict`/`load_state_dict` (in place, strict
errors like torch's), `repr`, and the `td.nn` binding that lets `Linear` know
its client, against the real `tensord` binary.
"""
from __future__ import annotations

import gc
from collections import OrderedDict

import numpy as np
import pytest

import tensord
from raw_wire import wait_for
from tensord import nn
from tensord.nn import functional as F


class Net(nn.Module):
    """Two Linear layers around a ReLU, with one persistent and one non-persistent buffer."""

    def __init__(self, td):
        super().__init__()
        self.fc1 = td.nn.Linear(3, 4)
        self.act = td.nn.ReLU()
        self.fc2 = td.nn.Linear(4, 2)
        self.register_buffer("scale", td.ones(2))
        self.register_buffer("scratch", td.zeros(2), persistent=False)
        self.note = "not registered"

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


# ---- Parameter -----------------------------------------------------------------


def test_parameter_is_a_leaf_tensor_that_requires_grad(td):
    source = td.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    p = nn.Parameter(source)
    assert isinstance(p, tensord.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and not source.requires_grad
    assert p.handle != source.handle
    assert p.shape == (2, 3) and p.dtype == np.float32
    np.testing.assert_array_equal(p.numpy(), source.numpy())
    assert repr(p).startswith("Parameter containing:\ntensord.Tensor(shape=(2, 3)")
    assert type(p * 2) is tensord.Tensor  # ops give plain tensors, as in torch
    frozen = nn.Parameter(source, requires_grad=False)
    assert not frozen.requires_grad


def test_parameter_shares_its_source_storage(td):
    source = td.zeros(3)
    p = nn.Parameter(source)
    with tensord.no_grad():
        source.add_(1.5)
    np.testing.assert_array_equal(p.numpy(), np.full(3, 1.5, np.float32))


def test_parameter_owns_exactly_one_handle(td):
    baseline = td.memory_info().session_tensors
    p = nn.Parameter(td.ones(4))  # the temporary and the intermediate leaf must go, p must stay
    gc.collect()
    assert wait_for(lambda: td.memory_info().session_tensors == baseline + 1)
    np.testing.assert_array_equal(p.numpy(), np.ones(4, np.float32))
    del p
    gc.collect()
    assert wait_for(lambda: td.memory_info().session_tensors == baseline)


def test_parameter_rejects_non_tensors():
    with pytest.raises(TypeError, match="tensord.Tensor"):
        nn.Parameter(np.zeros(3))


# ---- registration and traversal --------------------------------------------------


def test_assignment_registers_parameters_buffers_and_modules(td):
    net = Net(td)
    assert [name for name, _ in net.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [p.shape for p in net.parameters()] == [(4, 3), (4,), (2, 4), (2,)]
    assert list(net.parameters(recurse=False)) == []
    assert [name for name, _ in net.named_buffers()] == ["scale", "scratch"]
    assert len(list(net.buffers())) == 2
    assert [name for name, _ in net.named_children()] == ["fc1", "act", "fc2"]
    assert list(net.children()) == [net.fc1, net.act, net.fc2]
    assert [name for name, _ in net.named_modules()] == ["", "fc1", "act", "fc2"]
    assert list(net.modules())[0] is net
    assert "note" not in net._parameters and net.note == "not registered"
    assert net.get_submodule("fc2") is net.fc2
    assert net.get_parameter("fc1.bias") is net.fc1.bias
    assert isinstance(net.fc1.weight, nn.Parameter)


def test_shared_modules_and_parameters_are_listed_once(td):
    shared = td.nn.Linear(2, 2)
    model = nn.Sequential(shared, td.nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert [name for name, _ in model.named_modules()] == ["", "0", "1"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # like torch


def test_register_parameter_buffer_and_module_explicitly(td):
    m = nn.Module()
    m.register_parameter("w", nn.Parameter(td.ones(2)))
    m.register_parameter("absent", None)
    m.register_buffer("running", td.zeros(2))
    m.add_module("inner", nn.Identity())
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert m.absent is None and m.inner is not None
    assert list(m.state_dict()) == ["w", "running"]
    m.w = None  # a registered parameter may be cleared
    assert list(m.state_dict()) == ["running"]


def test_registration_errors_are_torchs(td):
    m = nn.Module()
    m.register_parameter("w", nn.Parameter(td.ones(2)))
    with pytest.raises(TypeError, match="cannot assign 'tensord.Tensor' as parameter 'w'"):
        m.w = td.ones(2)
    with pytest.raises(KeyError, match="name can.+t contain"):
        m.register_parameter("a.b", None)
    with pytest.raises(KeyError, match="name can.+t be empty"):
        m.register_buffer("", None)
    m.plain = 3
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        m.register_parameter("plain", None)
    with pytest.raises(TypeError, match="not a Module subclass"):
        m.add_module("x", 3)
    with pytest.raises(TypeError, match="tensord.nn.Parameter or None required"):
        m.register_parameter("q", td.ones(2))

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(td.ones(1))  # before super().__init__()

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_getattr_and_delattr(td):
    net = Net(td)
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'missing'"):
        net.missing
    del net.fc2
    assert [name for name, _ in net.named_children()] == ["fc1", "act"]
    del net.scale
    assert "scale" not in net.state_dict()
    del net.note
    assert not hasattr(net, "note")
    assert "fc1" in dir(net)


def test_reassigning_a_name_moves_it_between_registries(td):
    m = nn.Module()
    m.x = td.nn.Linear(1, 1)
    m.x = nn.Parameter(td.ones(1))
    assert list(m.children()) == [] and [n for n, _ in m.named_parameters()] == ["x"]


def test_train_eval_apply_and_requires_grad(td):
    net = Net(td)
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="boolean"):
        net.train("no")
    visited = []
    assert net.apply(lambda m: visited.append(type(m).__name__)) is net
    assert visited == ["Linear", "ReLU", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())


def test_forward_is_required():
    with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required "forward"'):
        nn.Module()(1)


def test_zero_grad_clears_every_parameter(td):
    net = Net(td)
    x = td.from_numpy(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    for p in net.parameters():
        np.testing.assert_array_equal(p.grad.numpy(), np.zeros(p.shape, np.float32))
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    nn.Module().zero_grad()  # nothing to clear, no RPC needed


# ---- state_dict ---------------------------------------------------------------


def test_state_dict_downloads_parameters_and_persistent_buffers(td):
    net = Net(td)
    state = net.state_dict()
    assert isinstance(state, OrderedDict)
    assert list(state) == ["scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for name, value in state.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
    np.testing.assert_array_equal(state["fc1.weight"], net.fc1.weight.numpy())
    np.testing.assert_array_equal(state["scale"], np.ones(2, np.float32))
    kept = net.state_dict(keep_vars=True)
    assert kept["fc2.bias"] is net.fc2.bias


def test_load_state_dict_copies_in_place(td):
    net = Net(td)
    weight = net.fc1.weight
    rng = np.random.default_rng(1)
    new = {k: rng.standard_normal(v.shape) for k, v in net.state_dict().items()}  # float64: cast on load
    result = net.load_state_dict(new)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert net.fc1.weight is weight  # the same Parameter, so an optimizer over it keeps working
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, new[name].astype(np.float32))
    assert net.fc1.weight.requires_grad


def test_load_state_dict_takes_tensors_of_this_and_other_clients(td, server):
    src, dst = Net(td), Net(td)
    dst.load_state_dict(src.state_dict(keep_vars=True))
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with tensord.connect(server.address, timeout=30) as other:
        remote = Net(other)
        remote.load_state_dict(src.state_dict(keep_vars=True))
        np.testing.assert_array_equal(remote.fc2.weight.numpy(), src.fc2.weight.numpy())


def test_load_state_dict_optimizer_sees_loaded_values(td):
    layer = td.nn.Linear(2, 1)
    opt = td.optim.SGD(layer.parameters(), lr=0.5)
    layer.load_state_dict({"weight": np.array([[1.0, 2.0]]), "bias": np.array([3.0])})
    layer(td.ones(1, 2)).sum().backward()  # d/dw = [1, 1], d/db = 1
    opt.step()
    np.testing.assert_allclose(layer.weight.numpy(), [[0.5, 1.5]])
    np.testing.assert_allclose(layer.bias.numpy(), [2.5])


def test_load_state_dict_strict_errors_list_every_problem(td):
    net = Net(td)
    before = net.state_dict()
    bad = dict(before)
    del bad["fc2.bias"]
    bad["extra"] = np.zeros(1)
    bad["fc1.weight"] = np.zeros((3, 3))
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(bad)
    assert str(info.value) == (
        "Error(s) in loading state_dict for Net:\n"
        '\tMissing key(s) in state_dict: "fc2.bias". \n'
        '\tUnexpected key(s) in state_dict: "extra". \n'
        "\tsize mismatch for fc1.weight: copying a param with shape (3, 3) from checkpoint, "
        "the shape in current model is (4, 3)."
    )
    for name, value in net.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(value, before[name])


def test_load_state_dict_non_strict_reports_keys(td):
    net = Net(td)
    partial = {"fc1.bias": np.full(4, 7.0), "unknown": np.zeros(2)}
    result = net.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["unknown"]
    assert result.missing_keys == ["scale", "fc1.weight", "fc2.weight", "fc2.bias"]
    np.testing.assert_array_equal(net.fc1.bias.numpy(), np.full(4, 7.0, np.float32))
    with pytest.raises(RuntimeError, match="size mismatch for fc1.bias"):
        net.load_state_dict({"fc1.bias": np.zeros(5)}, strict=False)
    with pytest.raises(RuntimeError, match='expected a tensord.Tensor or NumPy array from checkpoint'):
        net.load_state_dict({"fc1.bias": [0.0] * 4}, strict=False)


# ---- repr ---------------------------------------------------------------------


def test_repr_matches_torch(td):
    net = Net(td)
    assert repr(net) == (
        "Net(\n"
        "  (fc1): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (act): ReLU()\n"
        "  (fc2): Linear(in_features=4, out_features=2, bias=True)\n"
        ")"
    )
    model = nn.Sequential(
        td.nn.Linear(2, 2, bias=False),
        nn.Sequential(nn.GELU(approximate="tanh"), nn.Dropout(0.25)),
        nn.ModuleList([nn.Tanh(), nn.Tanh(), nn.Softmax(dim=-1)]),
        nn.Flatten(),
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=2, bias=False)\n"
        "  (1): Sequential(\n"
        "    (0): GELU(approximate='tanh')\n"
        "    (1): Dropout(p=0.25, inplace=False)\n"
        "  )\n"
        "  (2): ModuleList(\n"
        "    (0-1): 2 x Tanh()\n"
        "    (2): Softmax(dim=-1)\n"
        "  )\n"
        "  (3): Flatten(start_dim=1, end_dim=-1)\n"
        ")"
    )


# ---- containers ---------------------------------------------------------------


def test_sequential_indexing_slicing_and_mutation(td):
    a, b, c = td.nn.Linear(2, 3), nn.ReLU(), td.nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    with pytest.raises(IndexError):
        seq[3]
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[3], nn.Sigmoid)
    del seq[1]
    assert list(seq._modules) == ["0", "1", "2"] and seq[1] is c
    seq[0] = nn.Identity()
    assert isinstance(seq[0], nn.Identity)
    seq.insert(1, nn.Tanh())
    assert [type(m).__name__ for m in seq] == ["Identity", "Tanh", "Linear", "Sigmoid"]
    assert isinstance(seq.pop(1), nn.Tanh) and len(seq) == 3
    named = nn.Sequential(OrderedDict([("enc", td.nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_parameters()] == ["enc.weight", "enc.bias"]
    assert len(seq + named) == 5


def test_sequential_forward_chains_modules(td):
    seq = nn.Sequential(td.nn.Linear(3, 4), nn.Tanh(), td.nn.Linear(4, 2))
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    w1, b1, w2, b2 = (p.numpy().astype(np.float64) for p in seq.parameters())
    expected = np.tanh(x @ w1.T + b1) @ w2.T + b2
    np.testing.assert_allclose(seq(td.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_module_list_registers_without_forward(td):
    layers = nn.ModuleList([td.nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.ReLU())
    layers.extend([nn.Tanh()])
    layers += [nn.Sigmoid()]
    assert len(layers) == 6 and isinstance(layers[-1], nn.Sigmoid)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    del layers[0]
    assert list(layers._modules) == [str(i) for i in range(5)]
    layers.insert(0, nn.Identity())
    assert isinstance(layers[0], nn.Identity)
    with pytest.raises(TypeError, match="iterable"):
        layers.extend(nn.ReLU())
    with pytest.raises(NotImplementedError):
        layers(td.ones(2))


# ---- the td.nn binding --------------------------------------------------------


def test_td_nn_binds_layers_that_create_parameters(td):
    layer = td.nn.Linear(2, 3)
    assert isinstance(layer, nn.Linear) and type(layer).__name__ == "Linear"
    assert type(layer)._client is td and layer.weight._client is td
    assert td.nn.Linear is td.nn.Linear  # made once per client
    for name in ("Module", "Parameter", "functional", "ReLU", "MSELoss", "Sequential", "Softmax"):
        assert getattr(td.nn, name) is getattr(nn, name)
    assert td.nn.functional is F
    with pytest.raises(AttributeError, match="tensord.nn has no attribute 'Conv9d'"):
        td.nn.Conv9d


def test_layers_need_a_client(td):
    with pytest.raises(TypeError, match=r"td\.nn\.Linear\(\.\.\.\)"):
        nn.Linear(2, 3)
    layer = nn.Linear(2, 3, client=td)
    assert layer.weight._client is td and type(layer) is nn.Linear


def test_bound_layers_of_two_clients_stay_apart(td, server):
    with tensord.connect(server.address, timeout=30) as other:
        mine, theirs = td.nn.Linear(1, 1), other.nn.Linear(1, 1)
        assert type(mine) is not type(theirs)
        assert mine.weight._client is td and theirs.weight._client is other
        with pytest.raises(ValueError, match="same tensord client"):
            td.optim.SGD([mine.weight, theirs.weight], lr=0.1)
