"""Your network and your data, as hobench's module task takes them (see your_model.toml)."""

from sklearn.datasets import load_digits
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.classifier = nn.Linear(width * 4 * 4, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def digits():
    """(X, y): images of shape (n, channels, height, width) and integer labels."""
    X, y = load_digits(return_X_y=True)
    return X.reshape(-1, 1, 8, 8) / 16.0, y
