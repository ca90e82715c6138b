"""Accelerators compute float32 dots and convolutions in TF32 (GPU) or one bfloat16 pass (TPU) unless a
computation asks for full precision; the CPU ignores the request, so these tests read it off the jaxpr.
Nearest-centroid distances |x|^2 - 2 x.c + |c|^2 cancel (HuBERT features have norms in the tens), and the
HuBERT encoder is promised to match transformers' float32 HubertModel, so both ask for it."""

import jax
import jax.extend
import jax.numpy as jnp


def _precisions(jaxpr):
    """The ``precision`` of every dot and convolution in ``jaxpr``, its sub-jaxprs included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            out.append(eqn.params.get("precision"))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            out.extend(_precisions(sub))
    return out


def _all_highest(closed):
    found = _precisions(closed.jaxpr)
    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    assert found and all(p == highest for p in found), found


def test_kmeans_distances_at_full_precision():
    from slmjax.units.kmeans import _kmeans_pp, _local_stats

    x, c = jnp.ones((16, 4)), jnp.ones((3, 4))
    _all_highest(jax.make_jaxpr(_local_stats)(x, jnp.ones(16), c))
    _all_highest(jax.make_jaxpr(lambda x: _kmeans_pp(x, jax.random.key(0), 3))(x))


def test_hubert_encoder_at_full_precision():
    from slmjax.units.hubert import HubertConfig, HubertEncoder
    from slmjax.units.hubert_features import HubertFeatures

    cfg = HubertConfig(conv_dim=(8,) * 7, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=16, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    feats = HubertFeatures(HubertEncoder(cfg), layer=2)
    wave = jnp.zeros((1, 16000), jnp.float32)
    _all_highest(jax.make_jaxpr(feats._run)(feats._state, wave, jnp.asarray([16000], jnp.int32)))
