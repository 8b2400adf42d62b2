import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def index() -> str:
    return f"{os.environ.get('GREETING', 'Hello')} from fastapi!\n"
