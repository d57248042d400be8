"""The ADM UNet (Dhariwal & Nichol 2021) as the IVID authors configure it (reference 3.1).

One module serves both IVID models: the unconditional RGBD model (4 input
channels) and the conditional one (10: x_t, mask_rgb, the condition's RGB and
depth, mask; reference 2.7) are two configurations of it. Activations are NHWC;
parameters are float32 and `dtype` sets the compute dtype (bfloat16 on TPU).

Numerics follow the authors' PyTorch code so that their checkpoints port
exactly (reference 10.5): the time embedding is [cos, sin] of the raw integer
timestep; GroupNorm uses eps 1e-5 and runs in float32; attention keeps the
legacy per-head [q|k|v] channel layout and scales q and k by d^(-1/4) each;
attention sits at absolute feature-map sizes; the null class (label -1) is a
zero embedding. Submodule names mirror the authors' state_dict keys
(`input_blocks_4_1` is `input_blocks.4.1`), which keeps `convert.py` a table.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ivid_jax.models import cpu_defaults
from ivid_jax.models import fused

_GN_EPS = 1e-5  # PyTorch's GroupNorm default (Flax's is 1e-6).


def timestep_frequencies(dim: int, max_period: float = 10000.0) -> Array:
  """float32 [dim / 2]: f_k = exp(-ln(max_period) k / (dim / 2))."""
  half = dim // 2
  return jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)


def timestep_embedding(t: Array, dim: int, max_period: float = 10000.0) -> Array:
  """[cos(t f), sin(t f)] with f_k = exp(-ln(max_period) k / (dim / 2)), k < dim / 2.

  Args:
    t: [B] timesteps, raw integers 0..T-1 (not rescaled).
    dim: even embedding width.

  Returns:
    float32 [B, dim], cosines first.
  """
  args = jnp.asarray(t, jnp.float32)[:, None] * timestep_frequencies(dim, max_period)[None, :]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def _label_error(classes, num_classes: int, has_null_class: bool) -> str | None:
  classes = np.asarray(classes)
  low = -1 if has_null_class else 0
  bad = classes[(classes < low) | (classes >= num_classes)]
  if not bad.size:
    return None
  allowed = f'0..{num_classes - 1}' + (' or -1 (the null class)' if has_null_class else '')
  hint = ('' if has_null_class or not (bad == -1).any() else
          '; -1 is the null class only for a model built with has_null_class=True')
  return f'class labels must be {allowed}, got {sorted(set(bad.tolist()))}{hint}'


def check_labels(classes, num_classes: int, has_null_class: bool) -> None:
  """Raises ValueError naming the bad labels if any lies outside the embedding table.

  Host-side: the trainer's input and the samplers call it on the labels they are given.
  """
  error = _label_error(classes, num_classes, has_null_class)
  if error:
    raise ValueError(error)


def _check_labels(classes: Array, num_classes: int, has_null_class: bool) -> None:
  """Labels outside the embedding table would be clamped to a real class by the lookup.

  Concrete labels are checked here. Traced ones (under jit) are not: a host callback
  would synchronise every training step and keep the program out of the persistent
  compilation cache, so the callers that feed jitted code check at the host boundary
  (`check_labels`).
  """
  if not isinstance(classes, jax.core.Tracer):
    check_labels(classes, num_classes, has_null_class)


class GroupNorm32(nn.Module):
  """GroupNorm computed in float32, cast back to the input dtype."""
  num_groups: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = nn.GroupNorm(num_groups=self.num_groups, epsilon=_GN_EPS, dtype=jnp.float32,
                     param_dtype=jnp.float32, name='norm')(x.astype(jnp.float32))
    return y.astype(x.dtype)


class _GroupNormParams(nn.Module):
  """nn.GroupNorm's parameters ('scale' ones, 'bias' zeros) without the op."""
  features: int

  @nn.compact
  def __call__(self) -> tuple[Array, Array]:
    return (self.param('scale', nn.initializers.ones, (self.features,), jnp.float32),
            self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32))


class FusedGroupNorm32(nn.Module):
  """`GroupNorm32` (same parameters) as one op with optional folded bias, FiLM and SiLU.

  act((GroupNorm(x + bias) * (1 + scale) + shift)) through `fused.group_norm_act`, whose
  hand-written VJP is what makes the CPU step fast; cast back to x's dtype.
  """
  num_groups: int

  @nn.compact
  def __call__(self, x: Array, *, bias: Array | None = None, scale: Array | None = None,
               shift: Array | None = None, act: bool = False) -> Array:
    gamma, beta = _GroupNormParams(x.shape[-1], name='norm')()
    return fused.group_norm_act(x, gamma, beta, groups=self.num_groups, eps=_GN_EPS,
                                bias=bias, scale=scale, shift=shift, act=act).astype(x.dtype)


class _ConvNoBias(nn.Module):
  """nn.Conv's parameters and convolution, its bias returned instead of added (stride 1).

  For a convolution followed by a `FusedGroupNorm32`, which adds the bias for free.
  """
  features: int
  kernel: int
  dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    kernel = self.param('kernel', _kernel_init(False),
                        (self.kernel, self.kernel, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    pad = self.kernel // 2
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1),
                                     ((pad, pad), (pad, pad)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y, bias


def _kernel_init(zero: bool):
  return nn.initializers.zeros if zero else nn.linear.default_kernel_init


def _conv(features: int, name: str, dtype: Any, kernel: int = 3, zero: bool = False,
          strides: int = 1) -> nn.Conv:
  init = _kernel_init(zero)
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((kernel // 2, kernel // 2),) * 2, dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=init, name=name)


def _upsample(x: Array) -> Array:
  """Nearest-neighbour x2 (F.interpolate(..., mode='nearest'))."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _downsample(x: Array) -> Array:
  """2 x 2 average pooling, stride 2."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class ResBlock(nn.Module):
  """ADM residual block with scale-shift conditioning and optional up/down-sampling.

  `fused`: the GroupNorms run as `FusedGroupNorm32` (SiLU, FiLM and the in_conv bias folded
  in); same parameters, same function.
  """
  out_channels: int
  num_groups: int = 32
  dropout: float = 0.0
  use_scale_shift_norm: bool = True
  up: bool = False
  down: bool = False
  dtype: Any = jnp.float32
  fused: bool = False

  @nn.compact
  def __call__(self, x: Array, emb: Array, train: bool = False) -> Array:
    width = 2 * self.out_channels if self.use_scale_shift_norm else self.out_channels
    emb_dense = nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32, name='emb_dense')
    if self.fused:
      h = FusedGroupNorm32(self.num_groups, name='in_norm')(x, act=True)
    else:
      h = nn.silu(GroupNorm32(self.num_groups, name='in_norm')(x))
    if self.up or self.down:
      resample = _upsample if self.up else _downsample
      h, x = resample(h), resample(x)
    if self.fused:
      h, in_bias = _ConvNoBias(self.out_channels, 3, self.dtype, name='in_conv')(h)
      emb_out = emb_dense(nn.silu(emb)).astype(jnp.float32)
      if self.use_scale_shift_norm:
        scale, shift = jnp.split(emb_out, 2, axis=-1)
        h = FusedGroupNorm32(self.num_groups, name='out_norm')(
            h, bias=in_bias, scale=scale, shift=shift, act=True)
      else:
        h = FusedGroupNorm32(self.num_groups, name='out_norm')(h, bias=in_bias + emb_out,
                                                               act=True)
    else:
      h = _conv(self.out_channels, 'in_conv', self.dtype)(h)
      emb_out = emb_dense(nn.silu(emb)).astype(h.dtype)[:, None, None, :]
      if self.use_scale_shift_norm:
        scale, shift = jnp.split(emb_out, 2, axis=-1)
        h = GroupNorm32(self.num_groups, name='out_norm')(h) * (1 + scale) + shift
      else:
        h = GroupNorm32(self.num_groups, name='out_norm')(h + emb_out)
      h = nn.silu(h)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = _conv(self.out_channels, 'out_conv', self.dtype, zero=True)(h)
    if x.shape[-1] != self.out_channels:
      x = _conv(self.out_channels, 'skip', self.dtype, kernel=1)(x)
    return x + h


class AttentionBlock(nn.Module):
  """Self-attention over all positions, legacy ADM [q|k|v]-per-head layout."""
  num_heads: int
  num_groups: int = 32
  dtype: Any = jnp.float32
  fused: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b, height, width, c = x.shape
    ch = c // self.num_heads
    norm = (FusedGroupNorm32 if self.fused else GroupNorm32)(self.num_groups, name='norm')
    h = norm(x).reshape(b, height * width, c)
    qkv = nn.Dense(3 * c, dtype=self.dtype, param_dtype=jnp.float32, name='qkv')(h)
    qkv = qkv.reshape(b, height * width, self.num_heads, 3, ch)
    scale = 1.0 / math.sqrt(math.sqrt(ch))
    q, k, v = qkv[..., 0, :] * scale, qkv[..., 1, :] * scale, qkv[..., 2, :]
    logits = jnp.einsum('bthc,bshc->bhts', q, k)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    a = jnp.einsum('bhts,bshc->bthc', weights, v).reshape(b, height * width, c)
    out = nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32,
                   kernel_init=nn.initializers.zeros, name='proj_out')(a)
    return x + out.reshape(b, height, width, c)


class Resample(nn.Module):
  """Up/down-sampling without a residual block (resblock_updown=False)."""
  up: bool
  use_conv: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    if self.up:
      x = _upsample(x)
      return _conv(c, 'conv', self.dtype)(x) if self.use_conv else x
    if self.use_conv:
      return _conv(c, 'op', self.dtype, strides=2)(x)
    return _downsample(x)


class UNet(nn.Module):
  """ADM UNet, NHWC. Built as `UNet(**config.model)`; fields are the authors' backbone args.

  Attributes:
    image_size: input side (static; attention placement depends on it).
    in_channels, out_channels: 4 / 4 unconditional, 10 / 4 conditional.
    model_channels: C; the time embedding is 4 C wide.
    num_res_blocks: residual blocks per level (decoder: one more).
    attention_resolutions: feature-map *sizes* with attention (e.g. 32, 16, 8).
    dropout: dropout in every residual block.
    channel_mult: channel multiplier per level.
    conv_resample: learned 3x3 resampling convs (only with resblock_updown=False).
    num_classes: None for an unconditional label-free model.
    has_null_class: label -1 is the null class (a zero class embedding).
    num_groups: GroupNorm groups.
    num_heads: attention heads, used when num_head_channels is -1 or None.
    num_head_channels: channels per head (the authors use 64).
    use_scale_shift_norm: FiLM-style conditioning of the second GroupNorm.
    resblock_updown: resample with residual blocks (the authors' setting).
    dtype: compute dtype; parameters stay float32.
    remat: rematerialise every residual and attention block in the backward
      pass (less memory for large batches, about 30% more compute).
    impl: 'auto' (the default): 'fused' when jax's default backend is the CPU at trace
      time, else 'xla'. 'fused' runs every GroupNorm (with its SiLU, FiLM and the
      preceding convolution's bias) as one op with a hand-written VJP, which XLA:CPU
      needs to train at PyTorch's speed; 'xla' leaves the plain ops to XLA's fusion (the
      TPU/GPU choice). Same parameters and the same function either way.
  """
  image_size: int
  in_channels: int
  model_channels: int
  out_channels: int
  num_res_blocks: int
  attention_resolutions: Sequence[int]
  dropout: float = 0.0
  channel_mult: Sequence[int] = (1, 2, 4, 8)
  conv_resample: bool = True
  num_classes: int | None = None
  has_null_class: bool = False
  num_groups: int = 32
  num_heads: int | None = 1
  num_head_channels: int | None = -1
  use_scale_shift_norm: bool = True
  resblock_updown: bool = True
  dtype: Any = jnp.float32
  remat: bool = False
  impl: str = 'auto'

  def _fused(self) -> bool:
    if self.impl not in ('auto', 'fused', 'xla'):
      raise ValueError(f"impl must be 'auto', 'fused' or 'xla', got {self.impl!r}")
    on_cpu = jax.default_backend() == 'cpu'
    if on_cpu:
      cpu_defaults.warn_if_too_late()
    return self.impl == 'fused' or (self.impl == 'auto' and on_cpu)

  def _heads(self, channels: int) -> int:
    if self.num_head_channels in (None, -1):
      return self.num_heads or 1
    if channels % self.num_head_channels:
      raise ValueError(f'{channels} channels are not divisible by num_head_channels '
                       f'{self.num_head_channels}')
    return channels // self.num_head_channels

  @nn.compact
  def __call__(self, x: Array, t: Array, classes: Array | None = None, *,
               train: bool = False) -> Array:
    """Predicts epsilon.

    Args:
      x: [B, H, W, in_channels] (H = W = image_size).
      t: [B] integer timesteps 0..999 (int or float).
      classes: int [B] labels, -1 for the null class; None: all null.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      float32 [B, H, W, out_channels].
    """
    b = x.shape[0]
    if x.shape[1:] != (self.image_size, self.image_size, self.in_channels):
      raise ValueError(f'x must be [B, {self.image_size}, {self.image_size}, '
                       f'{self.in_channels}], got {x.shape}')
    if t.shape != (b,):
      raise ValueError(f't must be [{b}], got {t.shape}')
    fused_ops = self._fused()
    emb = self._embedding(t, classes)
    res, attn = self._block_makers(fused_ops)
    h, hs = self._encoder(x, emb, train, res, attn)
    h = res(h.shape[-1], 'middle_block_0')(h, emb, train)
    h = attn(h.shape[-1], 'middle_block_1')(h)
    h = res(h.shape[-1], 'middle_block_2')(h, emb, train)
    h = self._decoder(h, hs, emb, train, res, attn)
    if fused_ops:
      h = FusedGroupNorm32(self.num_groups, name='out_0')(h.astype(jnp.float32), act=True)
    else:
      h = nn.silu(GroupNorm32(self.num_groups, name='out_0')(h.astype(jnp.float32)))
    return _conv(self.out_channels, 'out_2', jnp.float32, zero=True)(h)

  # The stages below run inside the compact __call__ (their submodules are its children, named
  # as the authors' state dict names them).

  def _embedding(self, t: Array, classes: Array | None) -> Array:
    """The time embedding plus the class embedding (zero for the null class): [B, 4 C]."""
    b = t.shape[0]
    c = self.model_channels
    embed_dim = 4 * c
    dense = functools.partial(nn.Dense, param_dtype=jnp.float32)
    emb = timestep_embedding(t, c)
    emb = dense(embed_dim, name='time_embed_1')(emb)
    emb = dense(embed_dim, name='time_embed_3')(nn.silu(emb))
    if self.num_classes is not None:
      label_emb = nn.Embed(self.num_classes, embed_dim, param_dtype=jnp.float32,
                           embedding_init=nn.initializers.normal(1.0), name='label_emb')
      if classes is not None:
        if classes.shape != (b,):
          raise ValueError(f'classes must be [{b}], got {classes.shape}')
        _check_labels(classes, self.num_classes, self.has_null_class)
        known = classes >= 0
        class_emb = label_emb(jnp.where(known, classes, 0))
        if self.has_null_class:
          class_emb = class_emb * known[:, None].astype(class_emb.dtype)
        emb = emb + class_emb
    elif classes is not None:
      raise ValueError('classes given to a model without num_classes')
    return emb

  def _block_makers(self, fused_ops: bool):
    """(res, attn): constructors of the residual and attention blocks with this UNet's settings."""
    res_cls = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
    attn_cls = nn.remat(AttentionBlock) if self.remat else AttentionBlock

    def res(out, name, **kw):
      return res_cls(out, num_groups=self.num_groups, dropout=self.dropout,
                     use_scale_shift_norm=self.use_scale_shift_norm, dtype=self.dtype,
                     fused=fused_ops, name=name, **kw)

    def attn(channels, name):
      return attn_cls(self._heads(channels), num_groups=self.num_groups, dtype=self.dtype,
                      fused=fused_ops, name=name)

    return res, attn

  def _encoder(self, x: Array, emb: Array, train: bool, res, attn) -> tuple[Array, list[Array]]:
    """The input blocks: (the lowest-resolution features, every block's output for the skips)."""
    c = self.model_channels
    h = x.astype(self.dtype)
    h = _conv(int(self.channel_mult[0] * c), 'input_blocks_0_0', self.dtype)(h)
    hs = [h]
    ds = self.image_size
    block = 1
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = res(int(mult * c), f'input_blocks_{block}_0')(h, emb, train)
        if ds in self.attention_resolutions:
          h = attn(h.shape[-1], f'input_blocks_{block}_1')(h)
        hs.append(h)
        block += 1
      if level != len(self.channel_mult) - 1:
        name = f'input_blocks_{block}_0'
        if self.resblock_updown:
          h = res(h.shape[-1], name, down=True)(h, emb, train)
        else:
          h = Resample(up=False, use_conv=self.conv_resample, dtype=self.dtype, name=name)(h)
        hs.append(h)
        block += 1
        ds //= 2
        assert h.shape[1] == ds, (h.shape, ds)
    return h, hs

  def _decoder(self, h: Array, hs: list[Array], emb: Array, train: bool, res, attn) -> Array:
    """The output blocks, each taking the matching skip from `hs` (consumed)."""
    c = self.model_channels
    ds = h.shape[1]
    block = 0
    for level, mult in list(enumerate(self.channel_mult))[::-1]:
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = res(int(c * mult), f'output_blocks_{block}_0')(h, emb, train)
        layer = 1
        if ds in self.attention_resolutions:
          h = attn(h.shape[-1], f'output_blocks_{block}_{layer}')(h)
          layer += 1
        if level and i == self.num_res_blocks:
          name = f'output_blocks_{block}_{layer}'
          if self.resblock_updown:
            h = res(h.shape[-1], name, up=True)(h, emb, train)
          else:
            h = Resample(up=True, use_conv=self.conv_resample, dtype=self.dtype, name=name)(h)
          ds *= 2
          assert h.shape[1] == ds, (h.shape, ds)
        block += 1
    return h


def from_backbone_args(args: dict[str, Any], **overrides) -> UNet:
  """UNet from the authors' backbone config dict (their `config_json`).

  `use_fp16` is dropped: parameters stay float32 here and the compute dtype is
  the separate `dtype` field (bfloat16 is the TPU choice).
  """
  known = set(UNet.__dataclass_fields__) - {'parent', 'name'}
  kwargs = {k: v for k, v in args.items() if k != 'use_fp16'}
  unknown = set(kwargs) - known
  if unknown:
    raise ValueError(f'unknown backbone arguments {sorted(unknown)}')
  for key in ('attention_resolutions', 'channel_mult'):
    if key in kwargs:
      kwargs[key] = tuple(kwargs[key])
  kwargs.update(overrides)
  return UNet(**kwargs)


# Used for testing only.
_TinyUNet = functools.partial(UNet, image_size=16, in_channels=4, model_channels=16,
                              out_channels=4, num_res_blocks=1, attention_resolutions=(8,),
                              channel_mult=(1, 2), num_groups=8, num_head_channels=8,
                              num_classes=4, has_null_class=True)
