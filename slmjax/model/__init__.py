"""slmjax.model: the paper's Llama-style speech LM (Flax NNX) and its checkpoint import/export."""

from slmjax.model.config import MODEL_SIZES, ModelConfig, count_params, ffn_hidden_dim
from slmjax.model.functional import abstract_params, forward, init_params, param_logical_axes

__all__ = [
    "MODEL_SIZES", "ModelConfig", "abstract_params", "count_params", "ffn_hidden_dim", "forward",
    "init_params", "param_logical_axes",
]
from slmjax.model.convert import (  # noqa: E402
    CheckpointFormatError, export_state_dict, import_state_dict, load_release_checkpoint,
    save_release_checkpoint)

__all__ += ["CheckpointFormatError", "export_state_dict", "import_state_dict",
            "load_release_checkpoint", "save_release_checkpoint"]
