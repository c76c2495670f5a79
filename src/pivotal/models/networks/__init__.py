"""The registered networks; importing this package registers every one of them.

=====================  ======================  ==========================================
registry name          class                   seed
=====================  ======================  ==========================================
``price_prediction``   PricePredictionModel    000: LSTM + self-attention, 5 prices, extrema
``transformer``        TransformerModel        001: sinusoidal positions, encoder, MLP head
``lstm_attention``     LSTMAttentionModel      001: LSTM + multi-head attention
``cnn1d``              CNN1DModel              001: parallel Conv1d (3, 5, 7), max pooling
``ensemble``           EnsembleModel           001: the three above, learned softmax weights
``hybrid``             HybridModel             002: conv + LSTM + attention + indicators
``volume_lstm``        VolumeLSTM              004: LSTM volume forecaster
``pivot_cnn``          PivotCNN                003: next pivot per level, BUY/SELL/HOLD
=====================  ======================  ==========================================
"""

from pivotal.models.networks.cnn1d import CNN1DModel
from pivotal.models.networks.ensemble import EnsembleModel
from pivotal.models.networks.hybrid import HybridModel
from pivotal.models.networks.lstm_attention import LSTMAttentionModel
from pivotal.models.networks.pivot_cnn import ACTIONS, PivotCNN
from pivotal.models.networks.price_prediction import PricePredictionModel
from pivotal.models.networks.transformer import TransformerModel
from pivotal.models.networks.volume_lstm import VolumeLSTM

__all__ = [
    "ACTIONS",
    "CNN1DModel",
    "EnsembleModel",
    "HybridModel",
    "LSTMAttentionModel",
    "PivotCNN",
    "PricePredictionModel",
    "TransformerModel",
    "VolumeLSTM",
]
