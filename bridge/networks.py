"""A built-in network zoo in tvm.relax.frontend.nn (no downloads, random weights), plus ONNX import.

Batch norm is folded into conv bias, as an inference compiler would do anyway. Weights are bound as constants
so that weight transposes fold away instead of showing up as tuning tasks.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend import nn

from xfer_jax.errors import UserError


class NetworkError(UserError):
    """Unknown network or unreadable model file. The CLI turns it into one line, exit 2."""


@dataclasses.dataclass(frozen=True)
class Network:
    name: str
    mod: tvm.IRModule  # Relax module with weights bound; entry function "main"
    inputs: dict[str, tuple[tuple[int, ...], str]]  # input name -> (shape, dtype)

    def input_spec(self) -> dict[str, list]:
        """The inputs as JSON: name -> [shape, dtype]."""
        return {name: [list(shape), dtype] for name, (shape, dtype) in self.inputs.items()}

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = []
        for shape, dtype in self.inputs.values():
            if dtype.startswith("int"):
                arrays.append(rng.integers(0, 100, size=shape).astype(dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(dtype))
        return arrays


def _pool(x: nn.Tensor, kind: str, size: int, stride: int, padding: int = 0) -> nn.Tensor:
    op = relax.op.nn.max_pool2d if kind == "max" else relax.op.nn.avg_pool2d
    return nn.op.wrap_nested(op(x._expr, pool_size=size, strides=stride, padding=padding), name=f"{kind}_pool")


def _global_avg_pool(x: nn.Tensor) -> nn.Tensor:
    pooled = nn.op.wrap_nested(relax.op.mean(x._expr, axis=[2, 3]), name="global_avg_pool")
    return pooled


class ConvAct(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "relu",
                 dilation: int = 1):
        self.conv = nn.Conv2D(cin, cout, kernel, stride, dilation * (kernel // 2), dilation=dilation, groups=groups,
                              bias=True)
        self.act = act

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        x = self.conv(x)
        return {"relu": nn.op.relu, "relu6": nn.op.relu6, "none": lambda t: t}[self.act](x)


# --- ResNet --------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        self.conv1 = ConvAct(cin, width, 3, stride)
        self.conv2 = ConvAct(width, width, 3, act="none")
        self.down = ConvAct(cin, width, 1, stride, act="none") if stride != 1 or cin != width else None

    def forward(self, x):
        shortcut = self.down(x) if self.down else x
        return nn.op.relu(self.conv2(self.conv1(x)) + shortcut)


class Bottleneck(nn.Module):
    expansion = 4  # block output width over the stage width
    groups = 1  # of the 3x3 convolution
    inner_scale = 1  # the 3x3 convolution's width over the stage width

    def __init__(self, cin: int, width: int, stride: int):
        inner, out = width * self.inner_scale, width * self.expansion
        self.conv1 = ConvAct(cin, inner, 1)
        self.conv2 = ConvAct(inner, inner, 3, stride, groups=self.groups)
        self.conv3 = ConvAct(inner, out, 1, act="none")
        self.down = ConvAct(cin, out, 1, stride, act="none") if stride != 1 or cin != out else None

    def forward(self, x):
        shortcut = self.down(x) if self.down else x
        return nn.op.relu(self.conv3(self.conv2(self.conv1(x))) + shortcut)


class GroupedBottleneck(Bottleneck):
    """ResNeXt's block: a 3x3 convolution in 32 groups, twice as wide as ResNet's, between two 1x1 convolutions."""

    expansion, groups, inner_scale = 2, 32, 2


class ResNet(nn.Module):
    def __init__(self, block, layers: list[int], num_classes: int = 1000):
        self.stem = ConvAct(3, 64, 7, 2)
        blocks, cin = [], 64
        for stage, count in enumerate(layers):
            width = 64 * 2**stage
            for i in range(count):
                blocks.append(block(cin, width, 2 if (i == 0 and stage > 0) else 1))
                cin = width * block.expansion
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = _pool(self.stem(x), "max", 3, 2, 1)
        for block in self.blocks:
            x = block(x)
        return self.fc(_global_avg_pool(x))


# --- MobileNetV2 ---------------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        hidden = cin * expand
        self.expand = ConvAct(cin, hidden, 1, act="relu6") if expand != 1 else None
        self.depthwise = ConvAct(hidden, hidden, 3, stride, groups=hidden, act="relu6")
        self.project = ConvAct(hidden, cout, 1, act="none")
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x) if self.expand else x))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]  # (expand, channels, repeats, first stride)

    def __init__(self, num_classes: int = 1000):
        self.stem = ConvAct(3, 32, 3, 2, act="relu6")
        blocks, cin = [], 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvAct(cin, 1280, 1, act="relu6")
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(_global_avg_pool(self.head(x)))


# --- DenseNet ------------------------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        self.bottleneck = ConvAct(cin, 4 * growth, 1)
        self.conv = ConvAct(4 * growth, growth, 3, act="none")

    def forward(self, x):
        return nn.op.concat([x, self.conv(self.bottleneck(nn.op.relu(x)))], dim=1)


class DenseNet(nn.Module):
    def __init__(self, blocks: list[int], growth: int = 32, init: int = 64, num_classes: int = 1000):
        self.stem = ConvAct(3, init, 7, 2)
        layers, transitions, cin = [], [], init
        for b, count in enumerate(blocks):
            for _ in range(count):
                layers.append(DenseLayer(cin, growth))
                cin += growth
            if b < len(blocks) - 1:
                transitions.append(ConvAct(cin, cin // 2, 1))
                cin //= 2
        self.layers = nn.ModuleList(layers)
        self.transitions = nn.ModuleList(transitions)
        self.block_sizes = blocks
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = _pool(self.stem(x), "max", 3, 2, 1)
        layer_iter = iter(self.layers)
        for b, count in enumerate(self.block_sizes):
            for _ in range(count):
                x = next(layer_iter)(x)
            if b < len(self.block_sizes) - 1:
                x = _pool(self.transitions[b](x), "avg", 2, 2)
        return self.fc(_global_avg_pool(nn.op.relu(x)))


# --- SqueezeNet 1.1: inception-style fire modules (squeeze, then parallel 1x1 / 3x3 expands, concatenated) --


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int):
        self.squeeze = ConvAct(cin, squeeze, 1)
        self.expand1 = ConvAct(squeeze, expand, 1)
        self.expand3 = ConvAct(squeeze, expand, 3)

    def forward(self, x):
        x = self.squeeze(x)
        return nn.op.concat([self.expand1(x), self.expand3(x)], dim=1)


class SqueezeNet(nn.Module):
    FIRES = [(64, 16, 64), (128, 16, 64), "pool", (128, 32, 128), (256, 32, 128), "pool", (256, 48, 192),
             (384, 48, 192), (384, 64, 256), (512, 64, 256)]

    def __init__(self, num_classes: int = 1000):
        self.stem = ConvAct(3, 64, 3, 2)
        self.fires = nn.ModuleList([Fire(*f) for f in self.FIRES if f != "pool"])
        self.classifier = ConvAct(512, num_classes, 1)

    def forward(self, x):
        x = _pool(self.stem(x), "max", 3, 2)
        fires = iter(self.fires)
        for step in self.FIRES:
            x = _pool(x, "max", 3, 2) if step == "pool" else next(fires)(x)
        return _global_avg_pool(self.classifier(x))


# --- Transformers --------------------------------------------------------------------------------------------


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, pre_norm: bool):
        self.heads, self.pre_norm = heads, pre_norm
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_in = nn.Linear(dim, ffn)
        self.ffn_out = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def attention(self, x):
        batch, seq, dim = x.shape
        qkv = nn.op.reshape(self.qkv(x), [batch, seq, 3, self.heads, dim // self.heads])
        q, k, v = nn.op.split(qkv, 3, axis=2)
        shape = [batch, seq, self.heads, dim // self.heads]
        attended = nn.op.scaled_dot_product_attention(
            nn.op.reshape(q, shape), nn.op.reshape(k, shape), nn.op.reshape(v, shape))
        return self.out(nn.op.reshape(attended, [batch, seq, dim]))

    def forward(self, x):
        if self.pre_norm:  # ViT
            x = x + self.attention(self.norm1(x))
            return x + self.ffn_out(nn.op.gelu(self.ffn_in(self.norm2(x))))
        x = self.norm1(x + self.attention(x))  # BERT
        return self.norm2(x + self.ffn_out(nn.op.gelu(self.ffn_in(x))))


class Bert(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int, ffn: int, vocab: int = 30522, seq: int = 128):
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter((seq, dim))
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, ffn, pre_norm=False) for _ in range(layers)])
        self.pooler = nn.Linear(dim, dim)

    def forward(self, tokens):
        x = self.norm(self.embed(tokens) + self.position)
        for layer in self.layers:
            x = layer(x)
        return nn.op.tanh(self.pooler(x))


class ViT(nn.Module):
    def __init__(self, image: int, patch: int, dim: int, depth: int, heads: int, num_classes: int = 1000):
        self.patches = (image // patch) ** 2
        self.embed = nn.Conv2D(3, dim, patch, patch, 0, bias=True)
        self.position = nn.Parameter((self.patches, dim))
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, 4 * dim, pre_norm=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.embed(x)  # [B, dim, h, w]
        batch, dim = x.shape[0], x.shape[1]
        x = nn.op.permute_dims(nn.op.reshape(x, [batch, dim, self.patches]), [0, 2, 1]) + self.position
        for layer in self.layers:
            x = layer(x)
        pooled = nn.op.wrap_nested(relax.op.mean(self.norm(x)._expr, axis=[1]), name="token_mean")
        return self.head(pooled)


class CausalDecoderLayer(nn.Module):
    """A GPT block: pre-norm causal self-attention and MLP."""

    def __init__(self, dim: int, heads: int):
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_in, self.mlp_out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        batch, seq, dim = x.shape
        q, k, v = nn.op.split(nn.op.reshape(self.qkv(self.norm1(x)), [batch, seq, 3, self.heads, dim // self.heads]),
                              3, axis=2)
        shape = [batch, seq, self.heads, dim // self.heads]
        attended = nn.op.scaled_dot_product_attention(nn.op.reshape(q, shape), nn.op.reshape(k, shape),
                                                      nn.op.reshape(v, shape), is_causal=True)
        x = x + self.out(nn.op.reshape(attended, [batch, seq, dim]))
        return x + self.mlp_out(nn.op.gelu(self.mlp_in(self.norm2(x))))


class GPT(nn.Module):
    """A decoder-only language model: causal attention and the large vocabulary projection of every position."""

    def __init__(self, layers: int, dim: int, heads: int, vocab: int = 50257, seq: int = 128):
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter((seq, dim))
        self.layers = nn.ModuleList([CausalDecoderLayer(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.logits = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position
        for layer in self.layers:
            x = layer(x)
        return self.logits(self.norm(x))


class MixerLayer(nn.Module):
    """MLP-Mixer: an MLP across the patches (on the transposed tokens), then one across the channels."""

    def __init__(self, patches: int, dim: int, token_hidden: int, channel_hidden: int):
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_in, self.token_out = nn.Linear(patches, token_hidden), nn.Linear(token_hidden, patches)
        self.channel_in, self.channel_out = nn.Linear(dim, channel_hidden), nn.Linear(channel_hidden, dim)

    def forward(self, x):
        mixed = nn.op.permute_dims(self.norm1(x), [0, 2, 1])  # [B, dim, patches]
        x = x + nn.op.permute_dims(self.token_out(nn.op.gelu(self.token_in(mixed))), [0, 2, 1])
        return x + self.channel_out(nn.op.gelu(self.channel_in(self.norm2(x))))


class Mixer(nn.Module):
    def __init__(self, image: int, patch: int, dim: int, depth: int, num_classes: int = 1000):
        self.patches = (image // patch) ** 2
        self.embed = nn.Conv2D(3, dim, patch, patch, 0, bias=True)
        self.layers = nn.ModuleList([MixerLayer(self.patches, dim, dim // 2, 4 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.embed(x)
        batch, dim = x.shape[0], x.shape[1]
        x = nn.op.permute_dims(nn.op.reshape(x, [batch, dim, self.patches]), [0, 2, 1])
        for layer in self.layers:
            x = layer(x)
        return self.head(nn.op.wrap_nested(relax.op.mean(self.norm(x)._expr, axis=[1]), name="token_mean"))


class DeepLab(nn.Module):
    """Semantic segmentation with dilated convolutions: a stride-8 encoder whose last stage is dilated, an ASPP
    head of parallel dilated 3x3 convolutions, and bilinear upsampling back to the input size."""

    def __init__(self, classes: int = 21, rates: tuple[int, ...] = (6, 12, 18)):
        self.stem = ConvAct(3, 32, 3, 2)
        self.encoder = nn.ModuleList([ConvAct(32, 64, 3, 2), ConvAct(64, 128, 3, 2), ConvAct(128, 128, 3),
                                      ConvAct(128, 256, 3, dilation=2), ConvAct(256, 256, 3, dilation=2)])
        self.branches = nn.ModuleList([ConvAct(256, 128, 1)] + [ConvAct(256, 128, 3, dilation=r) for r in rates])
        self.project = ConvAct(128 * (len(rates) + 1), 128, 1)
        self.classify = ConvAct(128, classes, 1, act="none")

    def forward(self, x):
        size = x.shape[2:]
        x = self.stem(x)
        for layer in self.encoder:
            x = layer(x)
        x = self.project(nn.op.concat([branch(x) for branch in self.branches], dim=1))
        return nn.op.interpolate(self.classify(x), size=(size[0], size[1]), mode="bilinear")


class UpConv(nn.Module):
    """A 2x2 stride-2 transposed convolution: the decoder's learned upsampling."""

    def __init__(self, cin: int, cout: int):
        self.weight = nn.Parameter((cin, cout, 2, 2))

    def forward(self, x):
        return nn.op.wrap_nested(relax.op.nn.conv2d_transpose(x._expr, self.weight._expr, strides=2), name="upconv")


class UNet(nn.Module):
    """An encoder-decoder: max-pooled downsampling, transposed-convolution upsampling, skip concatenations."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), classes: int = 2):
        self.down = nn.ModuleList([ConvAct(cin, cout, 3) for cin, cout in zip((3,) + widths[:-2], widths[:-1])])
        self.bottom = ConvAct(widths[-2], widths[-1], 3)
        self.up = nn.ModuleList([UpConv(cin, cout) for cin, cout in zip(widths[:0:-1], widths[-2::-1])])
        self.merge = nn.ModuleList([ConvAct(2 * w, w, 3) for w in widths[-2::-1]])
        self.classify = ConvAct(widths[0], classes, 1, act="none")

    def forward(self, x):
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
            x = _pool(x, "max", 2, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(nn.op.concat([up(x), skip], dim=1))
        return self.classify(x)


class LSTM(nn.Module):
    """Stacked LSTM cells unrolled over the sequence: small matrix-vector products and gate elementwise ops."""

    def __init__(self, features: int, hidden: int, layers: int, steps: int):
        self.hidden, self.steps = hidden, steps
        sizes = [features] + [hidden] * (layers - 1)
        self.inputs = nn.ModuleList([nn.Linear(size, 4 * hidden) for size in sizes])
        self.recurrent = nn.ModuleList([nn.Linear(hidden, 4 * hidden, bias=False) for _ in sizes])

    def forward(self, x):  # [B, steps, features]
        batch = x.shape[0]
        sequence = [nn.op.reshape(t, [batch, x.shape[2]]) for t in nn.op.split(x, self.steps, axis=1)]
        for inputs, recurrent in zip(self.inputs, self.recurrent):
            h = c = nn.op.zeros([batch, self.hidden], "float32")
            outputs = []
            for step in sequence:
                i, f, g, o = nn.op.split(inputs(step) + recurrent(h), 4, axis=1)
                c = nn.op.sigmoid(f) * c + nn.op.sigmoid(i) * nn.op.tanh(g)
                h = nn.op.sigmoid(o) * nn.op.tanh(c)
                outputs.append(h)
            sequence = outputs
        return sequence[-1]


# --- registry ------------------------------------------------------------------------------------------------

_IMAGE = ("x", (3, 224, 224), "float32")
_TOKENS = ("tokens", (128,), "int32")

# name -> (builder, (input name, per-example shape, dtype))
ZOO: dict[str, tuple[Callable[[], nn.Module], tuple]] = {
    "resnet18": (lambda: ResNet(BasicBlock, [2, 2, 2, 2]), _IMAGE),
    "resnet50": (lambda: ResNet(Bottleneck, [3, 4, 6, 3]), _IMAGE),
    "mobilenet_v2": (MobileNetV2, _IMAGE),
    "squeezenet": (SqueezeNet, _IMAGE),
    "densenet121": (lambda: DenseNet([6, 12, 24, 16]), _IMAGE),
    "bert_tiny": (lambda: Bert(layers=2, dim=128, heads=2, ffn=512), _TOKENS),
    "bert_base": (lambda: Bert(layers=12, dim=768, heads=12, ffn=3072), _TOKENS),
    "vit_tiny": (lambda: ViT(image=224, patch=16, dim=192, depth=12, heads=3), _IMAGE),
    "resnext50": (lambda: ResNet(GroupedBottleneck, [3, 4, 6, 3]), _IMAGE),
    "deeplab_tiny": (DeepLab, ("x", (3, 256, 256), "float32")),
    "unet_tiny": (UNet, ("x", (3, 128, 128), "float32")),
    "gpt_tiny": (lambda: GPT(layers=2, dim=256, heads=4), _TOKENS),
    "mixer_tiny": (lambda: Mixer(image=224, patch=16, dim=256, depth=4), _IMAGE),
    "lstm": (lambda: LSTM(features=128, hidden=512, layers=2, steps=32), ("x", (32, 128), "float32")),
}


def network_names() -> list[str]:
    return list(ZOO)


def _bind_random_weights(mod: tvm.IRModule, params: list, seed: int) -> tvm.IRModule:
    rng = np.random.default_rng(seed)
    bound = {}
    for name, param in params:
        shape = [int(s) for s in param.shape]
        fan_in = max(int(np.prod(shape[1:])), 1) if len(shape) > 1 else 1
        bound[name] = tvm.runtime.tensor((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(param.dtype))
    return relax.transform.BindParams("main", bound)(mod)


def zoo_network(name: str, batch: int = 1, seed: int = 0) -> Network:
    if name not in ZOO:
        raise NetworkError(f"unknown network {name!r}; choose from {', '.join(ZOO)}, or pass --onnx PATH")
    if batch < 1:
        raise NetworkError(f"batch must be >= 1, got {batch}")
    builder, (input_name, shape, dtype) = ZOO[name]
    model = builder()
    full_shape = (batch, *shape)
    mod, params = model.export_tvm(spec={"forward": {input_name: nn.spec.Tensor(list(full_shape), dtype)}})
    mod = _rename_entry(mod, "forward", "main")
    return Network(_batched_name(name, batch), _bind_random_weights(mod, params, seed),
                   {input_name: (full_shape, dtype)})


def _batched_name(name: str, batch: int) -> str:
    """A batch above 1 is another network (other tasks, its own collection folder): resnet18-b8."""
    return name if batch == 1 else f"{name}-b{batch}"


def unbatched_name(name: str) -> tuple[str, int]:
    """(the network's name at batch 1, its batch): what get_network takes to rebuild a network by its name."""
    base, _, batch = name.rpartition("-b")
    return (base, int(batch)) if base and batch.isdigit() and int(batch) > 1 else (name, 1)


def _rename_entry(mod: tvm.IRModule, old: str, new: str) -> tvm.IRModule:
    func = mod[old].with_attr("global_symbol", new)
    updated = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != old})
    updated[new] = func
    return updated


def onnx_network(path: pathlib.Path, batch: int = 1) -> Network:
    try:
        import onnx
        import tvm.relax.frontend.onnx as onnx_frontend

        model = onnx.load(str(path))
        shapes = {}
        for value in model.graph.input:
            if any(value.name == init.name for init in model.graph.initializer):
                continue
            dims = [d.dim_value if d.dim_value > 0 else batch for d in value.type.tensor_type.shape.dim]
            elem = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            shapes[value.name] = (tuple(dims), str(elem))
        mod = onnx_frontend.from_onnx(model, shape_dict={k: list(v[0]) for k, v in shapes.items()},
                                      keep_params_in_input=False)
    except ImportError:
        raise NetworkError("--onnx needs the onnx package: pip install 'xfer-jax[onnx]'") from None
    except Exception as err:  # onnx raises many unrelated types for a bad file
        raise NetworkError(f"cannot read ONNX model {path}: {str(err).splitlines()[0][:200]}") from None
    dynamic = any(d.dim_value <= 0 for value in model.graph.input for d in value.type.tensor_type.shape.dim)
    return Network(_batched_name(path.stem, batch) if dynamic else path.stem, mod, shapes)


def get_network(name: str | None = None, onnx_path: pathlib.Path | None = None, batch: int = 1) -> Network:
    if onnx_path is not None:
        return onnx_network(pathlib.Path(onnx_path), batch)
    return zoo_network(name, batch)
