"""The peer in bench/serving.py: the image classifier a user would write by hand with FastAPI and onnxruntime.

POST /classify takes the image file as the body, or as the multipart file field `image`; it decodes,
resizes, normalises and runs the model, one request at a time, with no batching, validation, metrics or
logging. Run by the benchmark as `uvicorn minimal_service:app` with MINIMAL_ONNX set to the ONNX file.
"""

import io
import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from PIL import Image

from cvops.data.preprocess import model_inputs
from cvops.export.onnx_model import read_preprocessing, session

ONNX = Path(os.environ["MINIMAL_ONNX"])
PRE = read_preprocessing(ONNX)
MODEL = session(ONNX)
INPUT = MODEL.get_inputs()[0].name
app = FastAPI()


@app.post("/classify")
async def classify(request: Request) -> dict[str, object]:
    if request.headers.get("content-type", "").startswith("multipart/"):
        form = await request.form()
        data = await form["image"].read()  # type: ignore[union-attr]
    else:
        data = await request.body()
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((PRE.image_size, PRE.image_size))
    logits = MODEL.run(None, {INPUT: model_inputs(np.asarray(image)[None], PRE.mean, PRE.std)})[0][0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = int(probabilities.argmax())
    return {"label": PRE.class_names[best], "score": float(probabilities[best])}
