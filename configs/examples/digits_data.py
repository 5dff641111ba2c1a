"""Your data: a function that returns arrays. Here scikit-learn's handwritten digits (1,797 8x8 images,
bundled with scikit-learn, so nothing is downloaded; `pip install scikit-learn`)."""

import numpy as np


def load(limit: int | None = None) -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255, shape (N, 8, 8)
    return {
        "x_train": pixels[:limit],
        "y_train": digits.target[:limit],  # no x_test: a test split is carved
        "classes": [str(d) for d in digits.target_names],
    }
