"""Exact embedding of a CNN into a fully connected (eFCN) or locally connected (eLCN) network.

A convolution is a linear map. For an input of shape ``(C_in, *S_in)`` and an
output of shape ``(C_out, *S_out)`` it is the matrix
``W_fc in R^{(C_out |S_out|) x (C_in |S_in|)}`` with

.. math:: (W_fc)_{(o, p), (c, q)} = \\sum_{t:\\, q = \\pi(p, t)} w_{o, c, t},

where ``pi(p, t)`` is the input position that tap ``t`` of the kernel reads at
output position ``p`` (stride, dilation and padding included). The construction
is loop-free over positions: an index map of the padded input is unfolded once
to give ``pi`` for every ``(p, t)``, and all kernel weights are scattered in one
call per chunk of output channels into a dense weight allocated once.

:func:`to_fcn` walks an ``nn.Sequential`` (nested ones too) and returns an
``nn.Sequential`` that computes the same function on the same inputs:

* Conv1d/Conv2d (any stride, padding, padding mode, dilation, groups, bias) and
  Linear become dense :class:`EmbeddedLinear` layers; BatchNorm (eval mode, with
  running statistics) directly after a conv is folded into its kernel.
* Parameter-free linear maps (average pooling, Flatten/Unflatten, explicit
  padding layers, Dropout in eval, Identity) and other BatchNorms are affine,
  so they are folded into the neighbouring dense layer.
* Elementwise activations are kept as they are.
* Max pooling is not linear, so it cannot be folded: it is kept as a fixed
  operator :class:`FlatMaxPool` acting on the flat vector (no parameters).
* A module instance used in several places (``nn.ReLU()`` reused, a shared conv)
  is embedded once per use, as the model applies it.
* Anything else raises :class:`UnsupportedModule` naming it, and so do what the
  walk cannot read: a Sequential subclass or a supported layer with its own
  ``forward`` (a residual block, a functional call), forward hooks. As a last guard the eFCN is
  compared with the model on random inputs and refused if they differ: an embedding
  is exact or it is not returned.

Before building, the size of the eFCN's weights is estimated
(:func:`embedding_bytes`); past ``max_bytes`` (default 4 GiB, ``None`` for no limit)
:class:`EmbeddingTooLarge` is raised with the number, before anything is allocated.

:func:`to_lcn` gives the locally connected embedding: the same matrices with
their support frozen (:class:`MaskedLinear`): untied weights, same sparsity.
With ``sparse=True`` the conv layers are stored as sparse matrices on their
support (:class:`SparseLinear`), which is an eLCN in sparse storage; they are built
from the support directly, never through the dense matrix (a conv composed with a
neighbouring affine map, such as average pooling, is dense and stored densely).
Sizes are compared with ``convbias.models.count_parameters`` and
``parameter_bytes``. Used by chapter 5, and by chapter 6 through
:mod:`convbias.capacity`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
)
PARAMETER_FREE_LINEAR = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.CircularPad1d,
    nn.CircularPad2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d)
CONVS = (nn.Conv1d, nn.Conv2d)
#: Output channels per scatter call are chosen so that temporary index tensors stay below this many entries.
CHUNK_ENTRIES = 1 << 21


#: Default limit on the estimated size of an eFCN's weights (bytes): 4 GiB.
MAX_BYTES = 4 << 30


class UnsupportedModule(TypeError):
    """A module that the embedding cannot represent exactly."""


class EmbeddingTooLarge(MemoryError):
    """The eFCN would need more memory than the caller allowed (``max_bytes``)."""


# ----------------------------------------------------------------------------- index maps
@dataclass
class ConvSupport:
    """Where the kernel weights of a conv land in its dense matrix.

    ``flat[e]`` is the position ``row * n_in + col`` of entry ``e`` in the dense
    weight of shape ``(n_out, n_in)``, and ``tap[e]`` the index into
    ``kernel.reshape(-1)`` of the weight stored there. ``unique`` is False when
    an entry receives several taps (reflect/replicate/circular padding wrapping
    onto itself): the dense entry is then their sum.
    """

    flat: Tensor
    tap: Tensor
    shape: tuple[int, int]
    kernel_numel: int
    unique: bool


def _spatial(conv: nn.Module) -> int:
    return 1 if isinstance(conv, nn.Conv1d) else 2


def conv_output_shape(
    conv: nn.Conv1d | nn.Conv2d, in_shape: Sequence[int]
) -> tuple[int, ...]:
    """Shape ``(C_out, *S_out)`` of ``conv`` applied to one input of shape ``in_shape``."""
    d = _spatial(conv)
    pads = (
        conv._reversed_padding_repeated_twice
    )  # (left_last, right_last, left_prev, right_prev)
    sizes = []
    for i in range(d):
        j = d - 1 - i
        n = in_shape[1 + i] + pads[2 * j] + pads[2 * j + 1]
        k = conv.dilation[i] * (conv.kernel_size[i] - 1) + 1
        sizes.append((n - k) // conv.stride[i] + 1)
    return (conv.out_channels, *sizes)


def _check_conv_input(conv: nn.Module, in_shape: Sequence[int]) -> None:
    d = _spatial(conv)
    if len(in_shape) != 1 + d or in_shape[0] != conv.in_channels:
        raise ValueError(
            f"{type(conv).__name__}(in_channels={conv.in_channels}) needs inputs of shape "
            f"(C={conv.in_channels}, {'L' if d == 1 else 'H, W'}), but the features here have shape {tuple(in_shape)}: "
            "check the input_shape passed to the embedding."
        )


def conv_index_map(
    conv: nn.Conv1d | nn.Conv2d, in_shape: Sequence[int]
) -> tuple[Tensor, tuple[int, ...]]:
    """Input index read by every (tap, output position): a ``(C_in * K, P)`` long tensor, -1 for zero padding.

    Rows follow the kernel layout ``(c, *k)``, columns the output positions in
    row-major order; the second return value is the output shape.
    """
    _check_conv_input(conv, in_shape)
    d = _spatial(conv)
    n_in = int(torch.tensor(in_shape).prod())
    # float64 holds indices exactly up to 2**53; padding modes act on the index map as on data.
    index = torch.arange(n_in, dtype=torch.float64).reshape(1, *in_shape)
    pads = list(conv._reversed_padding_repeated_twice)
    if any(pads):
        if conv.padding_mode == "zeros":
            index = F.pad(index, pads, mode="constant", value=-1.0)
        else:
            index = F.pad(index, pads, mode=conv.padding_mode)
    if d == 1:
        index = index.unsqueeze(2)
        kernel, dilation, stride = (
            (1, *conv.kernel_size),
            (1, *conv.dilation),
            (1, *conv.stride),
        )
    else:
        kernel, dilation, stride = conv.kernel_size, conv.dilation, conv.stride
    cols = F.unfold(index, kernel_size=kernel, dilation=dilation, stride=stride)[0]
    return cols.round().long(), conv_output_shape(conv, in_shape)


def conv_support(
    conv: nn.Conv1d | nn.Conv2d, in_shape: Sequence[int]
) -> tuple[ConvSupport, tuple[int, ...]]:
    """The :class:`ConvSupport` of ``conv`` on inputs of shape ``in_shape`` (all output channels)."""
    cols, out_shape = conv_index_map(conv, in_shape)
    n_in = cols.new_tensor(in_shape).prod().item()
    P = cols.shape[1]
    g = conv.groups
    cout_g = conv.out_channels // g
    T = cols.shape[0] // g  # taps per output channel: (C_in / groups) * |K|
    flat_parts, tap_parts = [], []
    for grp in range(g):
        offset, tap = _group_offsets(cols[grp * T : (grp + 1) * T], n_in)
        o = torch.arange(grp * cout_g, (grp + 1) * cout_g)
        flat_parts.append((o[:, None] * (P * n_in) + offset[None]).reshape(-1))
        tap_parts.append((o[:, None] * T + tap[None]).reshape(-1))
    flat, tap = torch.cat(flat_parts), torch.cat(tap_parts)
    unique = conv.padding_mode == "zeros" or torch.unique(flat).numel() == flat.numel()
    support = ConvSupport(
        flat, tap, (conv.out_channels * P, n_in), conv.weight.numel(), bool(unique)
    )
    return support, out_shape


def _group_offsets(cols: Tensor, n_in: int) -> tuple[Tensor, Tensor]:
    """For one group's ``(T, P)`` index map: flat offsets ``p * n_in + col`` of valid entries, and their taps."""
    T, P = cols.shape
    valid = cols >= 0
    offset = torch.arange(P).mul_(n_in)[None, :] + cols
    tap = torch.arange(T)[:, None].expand(T, P)
    return offset[valid], tap[valid]


# ----------------------------------------------------------------------------- dense / sparse conv matrices
def conv_to_dense(
    conv: nn.Conv1d | nn.Conv2d,
    in_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, tuple[int, ...]]:
    """Dense matrix ``(C_out |S_out|, C_in |S_in|)``, bias vector and output shape of ``conv``.

    ``weight``/``bias`` override the module's (used to fold a BatchNorm). With zero
    padding the matrix is written in one sequential pass, each entry gathered from
    the kernel through the unfolded index map (:func:`_dense_by_gather`); other
    padding modes scatter all taps through that map into zeros, adding up taps that
    wrap onto the same entry.
    """
    _check_conv_input(conv, in_shape)
    w = (conv.weight if weight is None else weight).detach()
    b = conv.bias if bias is None else bias
    out_shape = conv_output_shape(conv, in_shape)
    if conv.padding_mode == "zeros":
        dense = _dense_by_gather(conv, tuple(in_shape), w)
    else:
        dense = _dense_by_index_map(conv, in_shape, w)
    P = dense.shape[0] // conv.out_channels
    bias_vec = None if b is None else b.detach().repeat_interleave(P)
    return dense, bias_vec, out_shape


def _as_2d(conv: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    """Kernel, stride, dilation, left padding, input and output sizes with a 1-D conv seen as height 1."""
    pads = conv._reversed_padding_repeated_twice
    if _spatial(conv) == 1:
        return (
            (1, conv.kernel_size[0]),
            (1, conv.stride[0]),
            (1, conv.dilation[0]),
            (0, pads[0]),
            (1, in_shape[1]),
            (1, out_shape[1]),
        )
    return (
        conv.kernel_size,
        conv.stride,
        conv.dilation,
        (pads[2], pads[0]),
        in_shape[1:],
        out_shape[1:],
    )


def _dense_by_gather(conv: nn.Module, in_shape: Sequence[int], w: Tensor) -> Tensor:
    """The dense matrix of a zero-padded conv in one sequential pass: every entry gathered from the kernel.

    Per group, a ``(P, n_in)`` map holds the kernel tap each (output position, input)
    pair reads, or an index past the last tap where it reads nothing; one
    ``index_select`` of the kernel (with a zero appended) along that map writes the
    whole block of the dense matrix in memory order, zeros included (no separate
    zero fill, no strided writes). With zero padding no two taps of a position read
    the same input, so each entry is one tap or zero. Positions are taken in chunks
    of at most ``CHUNK_ENTRIES`` map entries only when the map would be large.
    """
    cols, _ = conv_index_map(conv, in_shape)
    n_in = math.prod(in_shape)
    P = cols.shape[1]
    g = conv.groups
    C_out = conv.out_channels
    cout_g = C_out // g
    T = cols.shape[0] // g  # taps per output channel: (C_in / groups) * |K|
    w2 = w.reshape(C_out, T)
    w_pad = torch.cat([w2, w2.new_zeros(C_out, 1)], 1)  # tap T: the zero
    dense = torch.empty(C_out, P, n_in, dtype=w.dtype, device=w.device)
    step = P if P * n_in <= 4 * CHUNK_ENTRIES else max(1, CHUNK_ENTRIES // n_in)
    for grp in range(g):
        block = cols[grp * T : (grp + 1) * T].to(w.device)
        kernel = w_pad[grp * cout_g : (grp + 1) * cout_g]
        out = dense[grp * cout_g : (grp + 1) * cout_g]
        for p0 in range(0, P, step):
            p1 = min(P, p0 + step)
            part = block[:, p0:p1]
            valid = part >= 0
            taps = torch.full((p1 - p0, n_in), T, dtype=torch.long, device=w.device)
            pos = torch.arange(p1 - p0, device=w.device).expand_as(part)[valid]
            tap = torch.arange(T, device=w.device)[:, None].expand_as(part)[valid]
            taps[pos, part[valid]] = tap
            if p0 == 0 and p1 == P:
                torch.index_select(kernel, 1, taps.view(-1), out=out.view(cout_g, -1))
            else:
                out[:, p0:p1] = kernel.index_select(1, taps.view(-1)).view(
                    cout_g, p1 - p0, n_in
                )
    return dense.view(C_out * P, n_in)


def _dense_by_index_map(conv: nn.Module, in_shape: Sequence[int], w: Tensor) -> Tensor:
    cols, _ = conv_index_map(conv, in_shape)
    n_in = int(torch.tensor(in_shape).prod())
    P = cols.shape[1]
    g = conv.groups
    cout_g = conv.out_channels // g
    T = cols.shape[0] // g
    dense = torch.zeros(conv.out_channels, P, n_in, dtype=w.dtype, device=w.device)
    w2 = w.reshape(conv.out_channels, T)
    for grp in range(g):
        block = cols[grp * T : (grp + 1) * T].to(w.device)
        valid = block >= 0
        pos = torch.arange(P, device=w.device).expand(T, P)[valid]
        col = block[valid]
        tap = torch.arange(T, device=w.device)[:, None].expand(T, P)[valid]
        step = max(1, CHUNK_ENTRIES // max(1, tap.numel()))
        for o0 in range(grp * cout_g, (grp + 1) * cout_g, step):
            o1 = min(o0 + step, (grp + 1) * cout_g)
            o = torch.arange(o0, o1, device=w.device)[:, None]
            dense.index_put_(
                (o, pos[None], col[None]), w2[o0:o1][:, tap], accumulate=True
            )
    return dense.view(conv.out_channels * P, n_in)


def identity_basis_matrix(
    layer: Callable[[Tensor], Tensor],
    in_shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Matrix and offset of an affine ``layer`` by pushing the one-hot basis through it (the test oracle).

    Returns ``(A, c)`` with ``layer(x).flatten() == A @ x.flatten() + c``. Slow
    (one forward pass per input coordinate) but exact for any configuration.
    """
    n = int(torch.tensor(in_shape).prod())
    with torch.no_grad():
        zero = layer(torch.zeros(1, *in_shape, dtype=dtype)).reshape(-1)
        basis = torch.eye(n, dtype=dtype).reshape(n, *in_shape)
        cols = layer(basis).reshape(n, -1) - zero
    return cols.T.contiguous(), zero


# ----------------------------------------------------------------------------- layers of the embedded network
def conv_geometry(conv: nn.Conv1d | nn.Conv2d) -> nn.Module:
    """A weightless copy of ``conv`` (on the meta device): enough to rebuild its index map later."""
    return type(conv)(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device="meta",
    )


class EmbeddedLinear(nn.Linear):
    """A dense layer of an eFCN; remembers the geometry of the conv it came from (if any).

    :meth:`conv_support` rebuilds that conv's :class:`ConvSupport` on demand
    (cached), so converting a large network does not keep index tensors alive.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        origin: tuple[nn.Module, tuple[int, ...]] | None = None,
        out_shape: tuple[int, ...] | None = None,
    ):
        nn.Module.__init__(self)  # no allocation, no random init: the weight is given
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.origin = origin
        self.out_shape = out_shape
        self._support: ConvSupport | None = None

    def conv_support(self) -> ConvSupport | None:
        """Support of the conv this layer embeds, on the weight's device; None for a Linear or a composite."""
        if self.origin is None:
            return None
        dev = self.weight.device
        if self._support is None:
            self._support = conv_support(*self.origin)[0]
        if self._support.flat.device != dev:
            s = self._support
            self._support = ConvSupport(
                s.flat.to(dev), s.tap.to(dev), s.shape, s.kernel_numel, s.unique
            )
        return self._support


class MaskedLinear(EmbeddedLinear):
    """A locally connected layer in dense storage: ``y = (W * M) x + b`` with a fixed 0/1 support ``M``."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        origin: tuple[nn.Module, tuple[int, ...]],
        out_shape: tuple[int, ...] | None = None,
    ):
        super().__init__(weight, bias, origin, out_shape)
        mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
        mask[self.conv_support().flat] = True
        self.register_buffer("mask", mask.view_as(weight))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class SparseLinear(nn.Module):
    """``y = W x + b`` with ``W`` stored as a sparse COO matrix on a fixed support; trains the support values."""

    def __init__(
        self,
        indices: Tensor,
        values: Tensor,
        shape: tuple[int, int],
        bias: Tensor | None,
    ):
        super().__init__()
        self.out_features, self.in_features = shape
        self.register_buffer("indices", indices)
        self.values = nn.Parameter(values)
        self.bias = None if bias is None else nn.Parameter(bias)

    def matrix(self) -> Tensor:
        return torch.sparse_coo_tensor(
            self.indices,
            self.values,
            (self.out_features, self.in_features),
            is_coalesced=True,
            check_invariants=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x W^T + b`` with the sparse ``W``; ``x`` is (batch, in_features)."""
        y = torch.sparse.mm(self.matrix(), x.T).T
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.values.numel()}"


class FlatMaxPool(nn.Module):
    """Max pooling on flat feature vectors: reshape to ``in_shape``, pool, flatten.

    Max pooling is not linear, so no matrix represents it: the eFCN keeps it as a
    fixed, parameter-free operator between dense layers (like an activation).
    """

    def __init__(self, pool: nn.MaxPool1d | nn.MaxPool2d, in_shape: Sequence[int]):
        super().__init__()
        self.pool = copy.deepcopy(pool)
        self.in_shape = tuple(in_shape)

    def forward(self, x: Tensor) -> Tensor:
        """Max pooling of the flat input read as ``in_shape`` maps, flattened again."""
        return self.pool(x.reshape(x.shape[0], *self.in_shape)).flatten(1)

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}"


class FlatAffine(nn.Module):
    """A chain of parameter-free affine modules applied to flat vectors (kept only when no dense layer is adjacent)."""

    def __init__(self, modules: Sequence[nn.Module], in_shape: Sequence[int]):
        super().__init__()
        self.chain = nn.Sequential(*[copy.deepcopy(m) for m in modules]).eval()
        self.in_shape = tuple(in_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.chain(x.reshape(x.shape[0], *self.in_shape)).flatten(1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.chain.eval()  # dropout stays off: the embedding reproduces the model in eval mode
        return self


# ----------------------------------------------------------------------------- walking the model
SUPPORTED = (
    CONVS + (nn.Linear,) + BATCHNORMS + PARAMETER_FREE_LINEAR + ELEMENTWISE + MAXPOOLS
)


def _own_forward(module: nn.Module, base: type) -> bool:
    """True if ``module``'s class overrides the ``forward`` of the supported class ``base`` it derives from."""
    return type(module).forward is not base.forward


def _check_visible(name: str, module: nn.Module) -> None:
    if module._forward_hooks or module._forward_pre_hooks:
        raise UnsupportedModule(
            f"module {name} ({type(module).__name__}) has forward hooks, which change what it computes in a way "
            "to_fcn cannot read: remove them before embedding."
        )


def _flat_modules(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf modules of a (nested) ``nn.Sequential`` in the order its forward applies them.

    A module instance used in several places appears once per use (each use is
    embedded as its own layer, as the model applies it). Raises :class:`UnsupportedModule`
    where the order of the layers is not the computation: a container that is not an
    ``nn.Sequential``, a subclass with its own ``forward``, a layer with hooks.
    """
    where = f"module {prefix}" if prefix else "the model"
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModule(
            f"to_fcn follows the order of an nn.Sequential, got {type(model).__name__} whose forward() cannot be "
            "read: write the model as an nn.Sequential (nested ones are fine)."
        )
    if _own_forward(model, nn.Sequential):
        raise UnsupportedModule(
            f"{where} ({type(model).__name__}) is an nn.Sequential subclass with its own forward() (a skip "
            "connection, a functional call, ...), which to_fcn cannot read: its layers in sequence would compute "
            "something else. Write it as a plain nn.Sequential."
        )
    _check_visible(where, model)
    out = []
    for (
        key,
        child,
    ) in model._modules.items():  # not named_children(): it skips a module's second use
        if child is None:
            continue
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(child, nn.Sequential):
            out += _flat_modules(child, name)
            continue
        _check_visible(name, child)
        base = next((c for c in SUPPORTED if isinstance(child, c)), None)
        if base is not None and _own_forward(child, base):
            raise UnsupportedModule(
                f"module {name} ({type(child).__name__}) subclasses {base.__name__} but defines its own forward(), "
                "which to_fcn cannot read: use the plain layer."
            )
        if isinstance(child, nn.PReLU) and child.num_parameters != 1:
            raise UnsupportedModule(
                f"module {name} (PReLU with num_parameters={child.num_parameters}, one slope per channel) "
                "is not elementwise on the eFCN's flat features: use nn.PReLU() with one shared slope."
            )
        out.append((name, child))
    return out


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """``model`` in eval mode inside the block; every submodule's training flag restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _feature_shape(
    module: nn.Module, in_shape: tuple[int, ...], dtype, device
) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(
            module(torch.zeros(1, *in_shape, dtype=dtype, device=device)).shape[1:]
        )


def _bn_is_affine(bn: nn.Module, name: str) -> None:
    if bn.running_mean is None:
        raise UnsupportedModule(
            f"module {name} ({type(bn).__name__}) has no running statistics, so in eval mode it normalises by "
            "batch statistics, which is not an affine map: build it with track_running_stats=True."
        )


def _bn_scale_shift(bn: nn.Module) -> tuple[Tensor, Tensor]:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


@dataclass
class _LazyConv:
    """A conv layer not yet turned into a matrix: built densely only if something must be composed with it."""

    conv: nn.Module
    in_shape: tuple[int, ...]
    weight: Tensor
    bias: Tensor | None

    def dense(self) -> tuple[Tensor, Tensor | None]:
        W, b, _ = conv_to_dense(self.conv, self.in_shape, self.weight, self.bias)
        return W, b

    def sparse(self) -> SparseLinear:
        """The conv as a :class:`SparseLinear` on its support, without forming the dense matrix."""
        support, out_shape = conv_support(conv_geometry(self.conv), self.in_shape)
        dev = self.weight.device
        values = self.weight.detach().reshape(-1)[support.tap.to(dev)]
        n_out, n_in = support.shape
        flat = support.flat.to(dev)
        coo = torch.sparse_coo_tensor(
            torch.stack([flat // n_in, flat % n_in]),
            values,
            (n_out, n_in),
            check_invariants=False,
        ).coalesce()
        P = n_out // self.conv.out_channels
        bias = None if self.bias is None else self.bias.detach().repeat_interleave(P)
        return SparseLinear(coo.indices(), coo.values().clone(), (n_out, n_in), bias)


class _Builder:
    """Accumulates affine maps between nonlinearities and emits one dense layer per run."""

    def __init__(
        self, in_shape: tuple[int, ...], dtype, device, mode: str, sparse: bool
    ):
        self.shape = in_shape
        self.dtype, self.device = dtype, device
        self.mode, self.sparse = mode, sparse
        self.layers: list[nn.Module] = [nn.Flatten()]
        self.pending: list[
            nn.Module
        ] = []  # parameter-free affine ops before any dense layer
        self.pending_in: tuple[int, ...] = in_shape
        self.current: tuple[Tensor, Tensor | None] | _LazyConv | None = (
            None  # (W, b) since the last nonlinearity
        )
        self.origin: tuple[nn.Module, tuple[int, ...]] | None = None

    def _materialize(self) -> None:
        if isinstance(self.current, _LazyConv):
            self.current = self.current.dense()

    # -- affine pieces
    def conv(self, conv: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
        out_shape = conv_output_shape(conv, self.shape)
        origin = (conv_geometry(conv), self.shape)
        if self.current is None and not self.pending:
            _check_conv_input(conv, self.shape)
            self.current, self.origin, self.shape = (
                _LazyConv(conv, self.shape, weight, bias),
                origin,
                out_shape,
            )
            return
        W, b, _ = conv_to_dense(conv, self.shape, weight, bias)
        self.dense(W, b, out_shape, origin)

    def dense(self, W: Tensor, b: Tensor | None, out_shape, origin) -> None:
        self._materialize()
        if self.current is None and self.pending:
            W, b = self._compose_pending(W, b)
            origin = None  # a composite of a conv and a pooling/padding map is no longer a conv
        elif self.current is not None:
            W0, b0 = self.current
            b = (W @ b0 if b0 is not None else 0) + (b if b is not None else 0)
            W = W @ W0
            origin = None
        self.current, self.origin, self.shape = (W, b), origin, tuple(out_shape)

    def _compose_pending(self, W: Tensor, b: Tensor | None) -> tuple[Tensor, Tensor]:
        """``W @ P`` and ``b + W c`` for the pending affine map ``x -> P x + c`` (rows pulled back by its vjp)."""
        chain = nn.Sequential(*self.pending).eval()
        zero = torch.zeros(1, *self.pending_in, dtype=self.dtype, device=self.device)

        def f(x):
            return chain(x).flatten(1)

        with torch.enable_grad():
            c, vjp = torch.func.vjp(f, zero)
            (WP,) = torch.func.vmap(vjp)(W.reshape(W.shape[0], 1, -1))
        c = c.detach().reshape(-1)
        b = W @ c + (b if b is not None else 0)
        self.pending = []
        return WP.detach().reshape(W.shape[0], -1), b

    def affine_op(self, module: nn.Module) -> None:
        out_shape = _feature_shape(module, self.shape, self.dtype, self.device)
        if _reshapes_only(module):  # the flat vector is unchanged: nothing to compose
            if self.pending:
                self.pending.append(module)
            self.shape = out_shape
            return
        self._materialize()
        if self.current is None:
            if not self.pending:
                self.pending_in = self.shape
            self.pending.append(module)
        else:
            W, b = self.current
            n_in = W.shape[1]
            with torch.no_grad():
                zero = module(
                    torch.zeros(1, *self.shape, dtype=self.dtype, device=self.device)
                ).reshape(-1)
                W = (
                    module(W.T.reshape(n_in, *self.shape)).reshape(n_in, -1) - zero
                ).T.contiguous()
                b = zero if b is None else module(b.reshape(1, *self.shape)).reshape(-1)
            self.origin = None
            self.current = (W, b)
        self.shape = out_shape

    # -- boundaries
    def flush(self) -> None:
        if isinstance(self.current, _LazyConv) and self.sparse:
            self.layers.append(self.current.sparse())
        elif self.current is not None:
            self._materialize()
            W, b = self.current
            self.layers.append(self._make_layer(W, b))
        elif self.pending:
            self.layers.append(FlatAffine(self.pending, self.pending_in))
        self.current, self.pending, self.origin = None, [], None

    def _make_layer(self, W: Tensor, b: Tensor | None) -> nn.Module:
        origin = self.origin
        if origin is None or self.mode == "fcn" and not self.sparse:
            return EmbeddedLinear(W.contiguous(), b, origin, self.shape)
        if self.sparse:
            flat = torch.unique(conv_support(*origin)[0].flat.to(W.device))
            rows, cols = flat // W.shape[1], flat % W.shape[1]
            return SparseLinear(
                torch.stack([rows, cols]),
                W.reshape(-1)[flat].clone(),
                tuple(W.shape),
                b,
            )
        return MaskedLinear(W.contiguous(), b, origin, self.shape)

    def nonlinear(self, module: nn.Module) -> None:
        self.flush()
        if isinstance(module, MAXPOOLS):
            out_shape = _feature_shape(module, self.shape, self.dtype, self.device)
            self.layers.append(FlatMaxPool(module, self.shape))
            self.shape = out_shape
        else:
            self.layers.append(copy.deepcopy(module))


def _is_dropout(module: nn.Module) -> bool:
    return isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout))


def _reshapes_only(module: nn.Module) -> bool:
    """Modules that leave the flattened feature vector as it is (in eval mode)."""
    return isinstance(module, (nn.Flatten, nn.Unflatten, nn.Identity)) or _is_dropout(
        module
    )


def _refuse(name: str, m: nn.Module) -> None:
    raise UnsupportedModule(
        f"module {name} ({type(m).__name__}) cannot be embedded exactly: supported are Conv1d/Conv2d, "
        "Linear, BatchNorm1d/2d (eval), average pooling, padding layers, Flatten/Unflatten, Dropout, "
        "Identity, max pooling (kept as a fixed operator) and elementwise activations."
    )


def _check_supported(modules: list[tuple[str, nn.Module]]) -> None:
    """Name the first module of an unsupported kind, before anything runs."""
    for name, m in modules:
        if not isinstance(m, SUPPORTED):
            _refuse(name, m)


def _check_input_shape(
    model: nn.Module, input_shape: tuple[int, ...], dtype, device
) -> None:
    """One forward pass of a zero input: a clear error when the model does not take inputs of this shape."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=dtype, device=device))
    except (RuntimeError, ValueError, IndexError) as exc:
        first = (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        raise ValueError(
            f"the model does not accept inputs of shape {input_shape} (input_shape is one input without the "
            f"batch dimension, e.g. (channels, height, width)): {first}"
        ) from exc


def _format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def embedding_bytes(
    model: nn.Module,
    input_shape: Sequence[int],
    sparse: bool = False,
    mode: str = "fcn",
) -> int:
    """Estimated memory of the weights of ``to_fcn(model, input_shape, sparse)`` (``mode="lcn"``: :func:`to_lcn`).

    One dense ``n_out x n_in`` matrix per run of affine layers between nonlinearities
    (plus a boolean mask per conv layer of an eLCN); with ``sparse`` a run that is a
    single conv is its support (16 bytes of indices and one value per entry). Found
    from the layer shapes (one forward pass of a zero input), without building anything.
    """
    input_shape = tuple(int(s) for s in input_shape)
    modules = _flat_modules(model)
    param = next(model.parameters(), None)
    itemsize = (
        param.element_size()
        if param is not None
        else torch.tensor([], dtype=torch.get_default_dtype()).element_size()
    )
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    total = 0
    x = torch.zeros(1, *input_shape, dtype=dtype, device=device)
    run_in, run = (
        x[0].numel(),
        [],
    )  # kinds of the affine layers since the last nonlinearity

    def close(out_numel: int) -> None:
        nonlocal total
        dense = [k for k in run if k[0] in ("conv", "linear")]
        if not dense:
            return
        affine_mixers = [k for k in run if k[0] == "affine"]
        if (
            sparse
            and len(dense) == 1
            and dense[0][0] == "conv"
            and not affine_mixers
            and run[0][0] == "conv"
        ):
            total += dense[0][1] * (16 + itemsize) + out_numel * itemsize
        else:
            total += out_numel * run_in * itemsize + out_numel * itemsize
            if (
                mode == "lcn"
                and len(dense) == 1
                and dense[0][0] == "conv"
                and not affine_mixers
            ):
                total += out_numel * run_in  # the boolean mask

    with torch.no_grad(), _eval_mode(model):
        for name, m in modules:
            y = m(x)
            if isinstance(m, CONVS):
                nnz = 0
                if sparse:  # the support's size: only a sparse layer stores it
                    cols, _ = conv_index_map(m, tuple(x.shape[1:]))
                    nnz = int((cols >= 0).sum()) * m.out_channels // m.groups
                run.append(("conv", nnz))
            elif isinstance(m, nn.Linear):
                run.append(("linear", m.out_features * m.in_features))
            elif isinstance(m, ELEMENTWISE) or isinstance(m, MAXPOOLS):
                close(x[0].numel())
                run_in, run = y[0].numel(), []
            elif not _reshapes_only(m) and not (
                isinstance(m, BATCHNORMS) and run and run[-1][0] == "conv"
            ):
                run.append(("affine", 0))
            x = y
        close(x[0].numel())
    return int(total)


def _verify(
    model: nn.Module, net: nn.Module, input_shape: tuple[int, ...], dtype, device
) -> None:
    """Raise :class:`UnsupportedModule` unless ``net`` computes ``model.eval()``'s outputs on random inputs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, *input_shape, generator=g, dtype=torch.float64).to(
        dtype=dtype, device=device
    )
    with torch.no_grad(), _eval_mode(model), _eval_mode(net):
        ref = model(x).reshape(len(x), -1)
        got = net(x).reshape(len(x), -1)
    if ref.shape != got.shape:
        raise UnsupportedModule(
            f"the embedding gives {got.shape[1]} outputs where the model gives {ref.shape[1]}: "
            "the model computes something its layers in sequence do not"
        )
    scale = ref.abs().max().clamp_min(torch.finfo(dtype).tiny)
    err = ((got - ref).abs().max() / scale).item()
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    if not err <= tol:
        raise UnsupportedModule(
            f"the embedding differs from the model by {err:.2g} (relative) on random inputs: the model computes "
            "something its layers in sequence do not (a functional call, a custom forward, a hook): not returned"
        )


def _embed(
    model: nn.Module,
    input_shape: Sequence[int],
    mode: str,
    sparse: bool,
    max_bytes: int | None = MAX_BYTES,
    verify: bool = True,
) -> nn.Sequential:
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ValueError(
            f"input_shape must be the shape of one input without the batch dimension, got {input_shape}"
        )
    modules = _flat_modules(model)
    _check_supported(modules)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    with _eval_mode(model):
        _check_input_shape(model, input_shape, dtype, device)
    if max_bytes is not None:
        need = embedding_bytes(model, input_shape, sparse=sparse, mode=mode)
        if need > max_bytes:
            raise EmbeddingTooLarge(
                f"the {'eLCN' if mode == 'lcn' else 'eFCN'} of this model on inputs {input_shape} needs about "
                f"{_format_bytes(need)} for its weights, above the limit of {_format_bytes(max_bytes)}: "
                f"pass max_bytes={need} (or None) to build it anyway"
                + (
                    ""
                    if sparse
                    else ", or sparse=True to store the conv layers on their support"
                )
                + "."
            )
    builder = _Builder(input_shape, dtype, device, mode, sparse)
    i = 0
    with torch.no_grad():
        while i < len(modules):
            name, m = modules[i]
            if isinstance(m, CONVS):
                weight, bias = m.weight, m.bias
                nxt = modules[i + 1][1] if i + 1 < len(modules) else None
                if isinstance(
                    nxt, BATCHNORMS
                ):  # fold BN into the kernel: keeps the conv's support and tying
                    _bn_is_affine(nxt, modules[i + 1][0])
                    scale, shift = _bn_scale_shift(nxt)
                    weight = weight * scale.view(-1, *([1] * (weight.ndim - 1)))
                    bias = shift + (scale * bias if bias is not None else 0)
                    i += 1
                builder.conv(
                    m, weight.detach(), None if bias is None else bias.detach()
                )
            elif isinstance(m, nn.Linear):
                n = int(torch.tensor(builder.shape).prod())
                if len(builder.shape) == 1 and n != m.in_features:
                    raise ValueError(
                        f"module {name} (Linear with in_features={m.in_features}) receives {n} features "
                        f"on inputs of shape {input_shape}: check input_shape."
                    )
                if len(builder.shape) != 1:
                    raise ValueError(
                        f"module {name} (Linear with in_features={m.in_features}) receives features of shape "
                        f"{builder.shape}: put an nn.Flatten before it so it acts on flat vectors."
                    )
                b = None if m.bias is None else m.bias.detach().clone()
                builder.dense(m.weight.detach().clone(), b, (m.out_features,), None)
            elif isinstance(m, BATCHNORMS):
                _bn_is_affine(m, name)
                builder.affine_op(copy.deepcopy(m).eval())
            elif isinstance(m, PARAMETER_FREE_LINEAR):
                builder.affine_op(copy.deepcopy(m).eval())
            elif isinstance(m, ELEMENTWISE) or isinstance(m, MAXPOOLS):
                if isinstance(m, MAXPOOLS) and m.return_indices:
                    raise UnsupportedModule(
                        f"module {name} (MaxPool with return_indices=True) returns a tuple."
                    )
                builder.nonlinear(m)
            else:
                _refuse(name, m)
            i += 1
        builder.flush()
    net = nn.Sequential(*builder.layers)
    if verify:
        _verify(model, net, input_shape, dtype, device)
    return net


def to_fcn(
    model: nn.Module,
    input_shape: Sequence[int],
    sparse: bool = False,
    max_bytes: int | None = MAX_BYTES,
    verify: bool = True,
) -> nn.Sequential:
    """The eFCN of ``model`` (an ``nn.Sequential``) on inputs of shape ``input_shape`` (no batch dim).

    Returns an ``nn.Sequential`` that starts with ``nn.Flatten`` and computes
    ``model.eval()``'s function exactly (up to float rounding), or raises
    :class:`UnsupportedModule` naming the module it cannot embed and why. Conv layers
    become dense :class:`EmbeddedLinear` layers carrying their :class:`ConvSupport`;
    ``sparse=True`` stores them as :class:`SparseLinear` on the conv support. An eFCN
    whose weights would exceed ``max_bytes`` (:func:`embedding_bytes`; default 4 GiB,
    ``None``: no limit) raises :class:`EmbeddingTooLarge` before anything is built.
    The result is verified against ``model`` on four random inputs (one batched
    forward pass of each); ``verify=False`` skips that, for callers that compare the
    outputs themselves (the relax protocol measures every eFCN's output error).
    """
    return _embed(model, input_shape, "fcn", sparse, max_bytes, verify)


def to_lcn(
    model: nn.Module,
    input_shape: Sequence[int],
    sparse: bool = False,
    max_bytes: int | None = MAX_BYTES,
    verify: bool = True,
) -> nn.Sequential:
    """The eLCN of ``model``: like :func:`to_fcn`, but each conv layer keeps its support fixed and its weights untied.

    Dense storage (:class:`MaskedLinear`) by default, :class:`SparseLinear` with ``sparse=True``;
    ``verify`` as in :func:`to_fcn`.
    """
    return _embed(model, input_shape, "lcn", sparse, max_bytes, verify)


# ----------------------------------------------------------------------------- distance from the CNN subspace
def _tied_projection(W: Tensor, support: ConvSupport) -> tuple[Tensor, Tensor]:
    """(squared norm off the support, squared norm on the support but off the tied subspace) of ``W``."""
    w = W.detach().reshape(-1).double()
    flat = support.flat if support.unique else torch.unique(support.flat)
    on = w[flat]
    outside = w.clone()
    outside[flat] = 0.0
    off_sq = outside.square().sum()
    if (
        not support.unique
    ):  # taps wrapped onto the same entry: the tied subspace is not a per-tap mean
        return off_sq, torch.full_like(off_sq, float("nan"))
    sums = torch.zeros(support.kernel_numel, dtype=w.dtype, device=w.device).index_add_(
        0, support.tap, on
    )
    counts = torch.zeros_like(sums).index_add_(0, support.tap, torch.ones_like(on))
    mean = sums / counts.clamp_min(1)
    off_tie = (on - mean[support.tap]).square().sum()
    return off_sq, off_tie


def subspace_distance(net: nn.Module) -> dict[str, Tensor]:
    """Fractions of the eFCN's conv-layer weight norm outside the CNN's sparsity pattern and off its weight tying.

    Over all layers that came from a conv (:class:`EmbeddedLinear` with a
    support): ``off_support = sum ||W outside M||^2 / sum ||W||^2`` and
    ``off_tying = sum ||W - Pi(W)||^2 / sum ||W||^2``, where ``Pi`` projects
    onto tied convolutions (each tap's entries replaced by their mean). Both are
    0 for an exact embedding; ``off_tying >= off_support``. Tensors (no host sync),
    float64. ``off_tying`` is NaN when a padding mode wraps several taps onto one entry.
    """
    total = off_support = off_tying = None
    for layer in net.modules():
        if isinstance(layer, EmbeddedLinear) and layer.origin is not None:
            W = (
                layer.weight * layer.mask
                if isinstance(layer, MaskedLinear)
                else layer.weight
            )
            off, tie = _tied_projection(W, layer.conv_support())
            sq = W.detach().double().square().sum()
            total = sq if total is None else total + sq
            off_support = off if off_support is None else off_support + off
            off_tying = off + tie if off_tying is None else off_tying + off + tie
    if total is None:
        raise ValueError(
            "no layer of this network came from a conv: embed a CNN with to_fcn first."
        )
    return {"off_support": off_support / total, "off_tying": off_tying / total}


def reinitialized_fcn(net: nn.Sequential, seed: int) -> nn.Sequential:
    """A standard FCN with the same architecture as the eFCN ``net``: every dense layer freshly initialised.

    Each :class:`EmbeddedLinear`/:class:`MaskedLinear`/:class:`SparseLinear` is
    replaced by an ``nn.Linear`` of the same shape with PyTorch's default init
    (under ``torch.manual_seed(seed)``); activations and pooling are kept.
    """
    torch.manual_seed(seed)
    layers = []
    for layer in net:
        if isinstance(layer, (EmbeddedLinear, SparseLinear)):
            dev = (
                layer.bias.device
                if layer.bias is not None
                else next(layer.parameters()).device
            )
            layers.append(
                nn.Linear(
                    layer.in_features,
                    layer.out_features,
                    bias=layer.bias is not None,
                    device=dev,
                )
            )
        else:
            layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers)


def parameter_bytes(model: nn.Module) -> int:
    """Memory of the parameters and buffers, in bytes."""
    return sum(
        t.numel() * t.element_size()
        for t in list(model.parameters()) + list(model.buffers())
    )


def embedded_layer_shapes(
    model: nn.Module, input_shape: Sequence[int]
) -> list[tuple[str, int, int, int]]:
    """``(kind, n_out, n_in, nnz)`` of the dense layer each Conv/Linear of ``model`` becomes, without building it.

    ``nnz`` counts the matrix entries a conv can make nonzero (its support);
    for a Linear it is ``n_out * n_in``. One forward pass of a zero input.
    """
    rows: list[tuple[str, int, int, int]] = []
    x = torch.zeros(1, *input_shape)
    with torch.no_grad(), _eval_mode(model):
        for name, m in _flat_modules(model):
            y = m(x)
            if isinstance(m, CONVS):
                cols, _ = conv_index_map(m, tuple(x.shape[1:]))
                nnz = int((cols >= 0).sum()) * m.out_channels // m.groups
                rows.append((type(m).__name__, y[0].numel(), x[0].numel(), nnz))
            elif isinstance(m, nn.Linear):
                rows.append(
                    (
                        "Linear",
                        m.out_features,
                        m.in_features,
                        m.out_features * m.in_features,
                    )
                )
            x = y
    return rows
