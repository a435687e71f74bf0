"""The model zoo: the restorer interface, model cards, the factory, the inference engine, safe checkpoint
loading and model profiles.

    from cirbench.zoo import create_model
    model = create_model("promptcir-compact")
    restored = model.restore(jpeg_pixels)          # uint8 in, uint8 out
"""

from .cards import ModelCard, list_cards, load_card
from .factory import create_model
from .inference import InferenceSettings, TorchRestorer
from .restorer import JpegBaseline, ModelInfo, Restored, Restorer

__all__ = ["create_model", "ModelCard", "list_cards", "load_card", "InferenceSettings", "TorchRestorer",
           "JpegBaseline", "ModelInfo", "Restored", "Restorer"]
