"""The wire types of the OpenAI-compatible API: the request schema, OpenAI-style errors, and the
message and usage shapes. No model, no engine: :mod:`imdb_llm.serve.api_server` builds on these."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from imdb_llm.llm.generation import GenerationDefaults

ALLOWED_ROLES = ("system", "developer", "user", "assistant")
TOOL_ROLES = ("tool", "function")
# Numbers as numbers, as OpenAI checks them: "0.5" (a string) is an error, not 0.5; an integer is a valid float.
StrictFloat = Annotated[float, Field(strict=True)]
StrictInt = Annotated[int, Field(strict=True)]


# --------------------------------------------------------------------------------------------
# Errors in OpenAI's shape
# --------------------------------------------------------------------------------------------
class APIError(Exception):
    """An error the client caused (or a busy server), returned as OpenAI-style JSON."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def param_path(loc) -> str | None:
    """pydantic's location as OpenAI writes a parameter: ("body", "messages", 0, "content") -> messages[0].content."""
    path = ""
    for part in loc:
        if part == "body":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def error_response(exc: APIError):
    from fastapi.responses import JSONResponse

    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:  # clients (the openai one included) wait this long before retrying
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers or None)


# --------------------------------------------------------------------------------------------
# Request schema (the subset of OpenAI's we implement; unknown fields are accepted and ignored,
# as OpenAI-compatible servers usually do, so newer clients keep working)
# --------------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    repetition_penalty: StrictFloat | None = Field(default=None, gt=0.0, le=10.0)  # not OpenAI's; vLLM's name and meaning
    no_repeat_ngram_size: StrictInt | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    n: StrictInt = 1
    seed: StrictInt | None = None
    frequency_penalty: StrictFloat | None = Field(default=None, ge=-2.0, le=2.0)  # OpenAI's range; only 0 is served
    presence_penalty: StrictFloat | None = Field(default=None, ge=-2.0, le=2.0)
    tools: list[Any] | None = None
    functions: list[Any] | None = None

    def to_settings(self, defaults: GenerationDefaults, max_new_tokens: int) -> GenerationDefaults:
        """How to decode this request: each knob it sets over the model's ``defaults`` (vLLM's
        ``to_sampling_params``). OpenAI's temperature decides sampling: above 0 samples, and 0 is greedy
        (:meth:`GenerationDefaults.override` reads it so)."""
        return defaults.override(max_new_tokens=max_new_tokens, do_sample=True if self.temperature else None, temperature=self.temperature,
                                 top_p=self.top_p, repetition_penalty=self.repetition_penalty, no_repeat_ngram_size=self.no_repeat_ngram_size)



def chat_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """The messages as plain dicts for the chat template, or a 400 naming the bad one."""
    if not body.messages:
        raise APIError(400, "'messages' must contain at least one message.", param="messages", code="empty_messages")
    for field in ("tools", "functions"):
        if getattr(body, field):
            raise APIError(400, f"'{field}': tool calling is not supported by this server (chat messages only).", param=field, code="tools_not_supported")
    for field in ("frequency_penalty", "presence_penalty"):
        if getattr(body, field):
            raise APIError(400, f"'{field}' is not supported by this server: use repetition_penalty or no_repeat_ngram_size.", param=field)
    messages = []
    for i, msg in enumerate(body.messages):
        if msg.role in TOOL_ROLES:
            raise APIError(400, f"messages[{i}]: the '{msg.role}' role is not supported: this server has no tool calling.",
                           param=f"messages[{i}].role", code="tools_not_supported")
        if msg.role not in ALLOWED_ROLES:
            raise APIError(400, f"Invalid role '{msg.role}' in messages[{i}]: expected one of {', '.join(ALLOWED_ROLES)}.", param=f"messages[{i}].role", code="invalid_role")
        if isinstance(msg.content, list):
            if any(p.type != "text" or p.text is None for p in msg.content):
                raise APIError(400, f"messages[{i}].content: only text parts are supported.", param=f"messages[{i}].content")
            content = "".join(p.text for p in msg.content)
        else:
            content = msg.content or ""
        bad = next((j for j, ch in enumerate(content) if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:  # a lone surrogate (JSON "\ud800"): not text any tokenizer can read
            raise APIError(400, f"messages[{i}].content is not valid Unicode text: a lone surrogate at character {bad}.",
                           param=f"messages[{i}].content", code="invalid_text")
        if not content and msg.role != "assistant":
            raise APIError(400, f"messages[{i}].content must not be empty.", param=f"messages[{i}].content", code="empty_content")
        messages.append({"role": "system" if msg.role == "developer" else msg.role, "content": content})
    return messages



def usage_counts(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
