"""One source row into the normalized example the trainer reads (see `formats.Schema`).

A message comes out as `{role, content: str, tool_calls?, tool_call_id?, name?,
reasoning_content?, weight?: 0}`; an example as `{"messages", "tools"?}`,
`{"prompt", "completion"}` (strings, or lists of messages: TRL's conversational
prompt/completion) or `{"text"}`. What a row carries with meaning is mapped into that
shape, never dropped: OpenAI tool calling, sharegpt `function_call`/`observation` turns and
its `system` field, alpaca `system` and `history`, content as a list of text parts,
reasoning under `reasoning_content`, `thinking` or `reasoning`. A RowProblem names the
field in the source's own keys (`conversations[2].from`), so the user can find it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubesft_trainer.formats import ROLES, RowProblem, Schema, kind

REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
ROLE_KEYS = {
    "assistant": frozenset({"tool_calls", "weight", *REASONING_KEYS}),
    "tool": frozenset({"tool_call_id", "name"}),
}
"""Keys a turn of each role carries besides its role and content; others are not used."""
SHAREGPT_CALL = "function_call"


def normalize_row(row: Any, schema: Schema) -> dict[str, Any]:
    """The row in its normalized shape; raises RowProblem when it cannot be used."""
    if not isinstance(row, dict):
        raise RowProblem("", f"must be a JSON object (got {kind(row)})")
    if schema.shape == "text":
        return {"text": _text(row, schema.text, schema.text)}
    if schema.shape == "turns":
        return _with_tools(row, {"messages": _conversation(row, schema)})
    if isinstance(row.get(schema.prompt[0]), list) or isinstance(row.get(schema.completion), list):
        return _conversational_pair(row, schema)
    prompt, completion = _prompt_completion(row, schema)
    if schema.format == "prompt-completion":
        return {"prompt": prompt, "completion": completion}
    turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return {"messages": _with_system(row, schema, [*_history(row, schema), *turns])}


def used_keys(schema: Schema) -> frozenset[str]:
    """Row keys the schema reads; any other key is reported as ignored."""
    if schema.shape == "text":
        return frozenset({schema.text})
    keys = {schema.system, schema.history, "tools"}
    if schema.shape == "turns":
        keys.add(schema.messages)
    else:
        keys.update((*schema.prompt, schema.completion))
    return frozenset(k for k in keys if k)


def unused_turn_keys(turn: dict[str, Any], schema: Schema) -> set[str]:
    """Keys of a source turn that normalization does not carry over (for the stats)."""
    raw = turn.get(schema.role)
    role = schema.role_map.get(raw, raw.lower()) if isinstance(raw, str) else None
    if raw == SHAREGPT_CALL:
        role = "assistant"
    used = {schema.role, schema.content, *ROLE_KEYS.get(str(role), ())}
    return {key for key in turn if key not in used}


def _conversation(row: dict[str, Any], schema: Schema) -> list[dict[str, Any]]:
    name = schema.messages
    turns = _require(row, name)
    if not isinstance(turns, list):
        raise RowProblem(name, f"must be a list of turns (got {kind(turns)})")
    if not turns:
        raise RowProblem(name, "must not be empty")
    out = _messages(turns, schema, name)
    if not any(t["role"] == "assistant" for t in out):
        raise RowProblem(name, "has no assistant turn, so there is nothing to learn from")
    if out[-1]["role"] == "user":
        raise RowProblem(
            f"{name}[{len(out) - 1}].{schema.role}",
            "the conversation ends with a user turn; end it with the assistant's reply",
        )
    return _with_system(row, schema, out)


def _messages(turns: list[Any], schema: Schema, name: str) -> list[dict[str, Any]]:
    """Each turn normalized; tool turns must answer a call when the row has structured calls."""
    out: list[dict[str, Any]] = []
    calls: set[str] = set()
    has_calls = any(isinstance(t, dict) and t.get("tool_calls") for t in turns) or any(
        isinstance(t, dict) and t.get(schema.role) == SHAREGPT_CALL for t in turns
    )
    for i, turn in enumerate(turns):
        path = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise RowProblem(path, f"must be an object with {schema.role} and {schema.content}")
        message = _message(turn, schema, path)
        if message["role"] == "system" and i > 0:
            raise RowProblem(f"{path}.{schema.role}", "a system turn is only allowed first")
        for call in message.get("tool_calls", []):
            calls.add(call.get("id", ""))
        if message["role"] == "tool" and has_calls:
            answered = message.get("tool_call_id")
            if not calls or (answered is not None and answered not in calls):
                shown = f" (tool_call_id {answered!r})" if answered is not None else ""
                raise RowProblem(path, f"a tool turn must answer an earlier tool call{shown}")
        out.append(message)
    return out


def _message(turn: dict[str, Any], schema: Schema, path: str) -> dict[str, Any]:
    raw_role = _require(turn, schema.role, f"{path}.{schema.role}")
    if raw_role == SHAREGPT_CALL and schema.content in turn:
        return _sharegpt_call(turn, schema, path)
    role = _role(turn, schema, f"{path}.{schema.role}")
    calls = _tool_calls(turn, path) if role == "assistant" else []
    content_path = f"{path}.{schema.content}"
    content = _content(turn, schema.content, content_path, optional=bool(calls) or role == "tool")
    if not content.strip() and not calls and role != "tool":
        raise RowProblem(content_path, "must not be empty")
    message: dict[str, Any] = {"role": role, "content": content}
    if calls:
        message["tool_calls"] = calls
    if role == "tool":
        for key in ("tool_call_id", "name"):
            if turn.get(key) is not None:
                message[key] = _text(turn, key, f"{path}.{key}")
    if role == "assistant":
        reasoning = next((k for k in REASONING_KEYS if turn.get(k) is not None), None)
        if reasoning is not None:
            message["reasoning_content"] = _text(turn, reasoning, f"{path}.{reasoning}", True)
        if turn.get("weight") is not None:
            if turn["weight"] not in (0, 1) or isinstance(turn["weight"], float):
                raise RowProblem(f"{path}.weight", f"must be 0 or 1 (got {turn['weight']!r})")
            if turn["weight"] == 0:
                message["weight"] = 0
    return message


def _content(value: dict[str, Any], key: str, path: str, optional: bool) -> str:
    """Text of a turn: a string, a list of text parts (joined), or null/absent if optional."""
    content = value.get(key)
    if content is None:
        if optional:
            return ""
        raise RowProblem(path, "is required" if key not in value else "must be a string (got null)")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for n, part in enumerate(content):
            kind_of = part.get("type") if isinstance(part, dict) else None
            if kind_of == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind_of in (None, "text"):
                raise RowProblem(f"{path}[{n}]", 'must be a part {"type": "text", "text": "..."}')
            else:
                raise RowProblem(
                    f"{path}[{n}].type",
                    f"{kind_of!r} parts are not supported: kubesft trains text-only models, "
                    "so content parts must be text",
                )
        return "\n".join(texts)
    raise RowProblem(path, f"must be a string or a list of text parts (got {kind(content)})")


def _tool_calls(turn: dict[str, Any], path: str) -> list[dict[str, Any]]:
    calls = turn.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise RowProblem(f"{path}.tool_calls", f"must be a list (got {kind(calls)})")
    return [_tool_call(call, f"{path}.tool_calls[{n}]") for n, call in enumerate(calls)]


def _tool_call(call: Any, path: str) -> dict[str, Any]:
    """OpenAI's `{id?, type: function, function: {name, arguments}}`, arguments as an object."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise RowProblem(path, 'must be {"type": "function", "function": {"name", "arguments"}}')
    function = call["function"]
    name = _text(function, "name", f"{path}.function.name")
    out: dict[str, Any] = {"type": "function", "function": {"name": name}}
    out["function"]["arguments"] = _arguments(function.get("arguments"), f"{path}.function")
    if call.get("id") is not None:
        out["id"] = str(call["id"])
    return out


def _arguments(arguments: Any, path: str) -> dict[str, Any]:
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise RowProblem(f"{path}.arguments", "not valid JSON") from None
    if not isinstance(arguments, dict):
        raise RowProblem(f"{path}.arguments", f"must be a JSON object (got {kind(arguments)})")
    return arguments


def _sharegpt_call(turn: dict[str, Any], schema: Schema, path: str) -> dict[str, Any]:
    """A sharegpt `function_call` turn: its value is `{"name", "arguments"}` as JSON."""
    value_path = f"{path}.{schema.content}"
    value = turn[schema.content]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowProblem(value_path, "not valid JSON") from None
    calls = value if isinstance(value, list) else [value]
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            _tool_call({"type": "function", "function": call}, value_path) for call in calls
        ],
    }


def _with_tools(row: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """The row's `tools` (function schemas; a JSON string in LLaMA-Factory's sharegpt)."""
    tools = row.get("tools")
    if tools is None or tools == "" or tools == []:
        return example
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            raise RowProblem("tools", "not valid JSON") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise RowProblem("tools", "must be a list of function schemas")
    return {**example, "tools": tools}


def _conversational_pair(row: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """TRL's conversational prompt/completion: both lists of messages."""
    first, second = row.get(schema.prompt[0]), row.get(schema.completion)
    if isinstance(first, list) != isinstance(second, list):
        raise RowProblem(
            schema.prompt[0],
            f"{schema.prompt[0]} and {schema.completion} must both be strings or both lists of "
            f"messages (got {kind(first)} and {kind(second)})",
        )
    out: dict[str, Any] = {}
    for key in (schema.prompt[0], schema.completion):
        value = _require(row, key)
        if not isinstance(value, list) or not value:
            raise RowProblem(key, f"must be a non-empty list of messages (got {kind(value)})")
        out[key] = _messages(value, schema, key)
    prompt, completion = out[schema.prompt[0]], out[schema.completion]
    if not any(m["role"] == "assistant" for m in completion):
        raise RowProblem(schema.completion, "has no assistant turn, so there is nothing to learn")
    return _with_tools(row, {"prompt": _with_system(row, schema, prompt), "completion": completion})


def _history(row: dict[str, Any], schema: Schema) -> list[dict[str, Any]]:
    """Alpaca's `history`: earlier [instruction, response] pairs, oldest first."""
    if schema.history is None or row.get(schema.history) is None:
        return []
    pairs = row[schema.history]
    if not isinstance(pairs, list):
        raise RowProblem(
            schema.history, f"must be a list of [prompt, response] (got {kind(pairs)})"
        )
    turns = []
    for n, pair in enumerate(pairs):
        path = f"{schema.history}[{n}]"
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise RowProblem(path, "must be a [prompt, response] pair of strings")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def _with_system(
    row: dict[str, Any], schema: Schema, turns: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Prepend the system column's prompt, unless the conversation has its own."""
    if schema.system is None or row.get(schema.system) is None or turns[0]["role"] == "system":
        return turns
    system = _text(row, schema.system, schema.system, allow_empty=True)
    return [{"role": "system", "content": system}, *turns] if system.strip() else turns


def _prompt_completion(row: dict[str, Any], schema: Schema) -> tuple[str, str]:
    first = schema.prompt[0]
    parts = [_text(row, first, first)]
    for key in schema.prompt[1:]:
        # Later prompt columns are optional: alpaca's `input` is often empty or missing.
        if row.get(key) is not None and _text(row, key, key, allow_empty=True).strip():
            parts.append(row[key])
    return "\n\n".join(parts), _text(row, schema.completion, schema.completion)


def _role(turn: dict[str, Any], schema: Schema, path: str) -> str:
    raw = turn[schema.role]
    if not isinstance(raw, str):
        raise RowProblem(path, f"must be a string (got {kind(raw)})")
    role = schema.role_map.get(raw) or schema.role_map.get(raw.lower()) or raw.lower()
    if role not in ROLES:
        shown = repr(raw) if len(raw) <= 40 else repr(raw[:37] + "...")
        raise RowProblem(
            path,
            f"unknown role {shown} (expected system, user, assistant or tool; "
            "map it with spec.columns.roleMap)",
        )
    return role


def _text(mapping: Mapping[str, Any], key: str, path: str, allow_empty: bool = False) -> str:
    value = _require(mapping, key, path)
    if not isinstance(value, str):
        raise RowProblem(path, f"must be a string (got {kind(value)})")
    if not allow_empty and not value.strip():
        raise RowProblem(path, "must not be empty")
    return value


def _require(mapping: Mapping[str, Any], key: str, path: str | None = None) -> Any:
    if key not in mapping:
        raise RowProblem(path or key, "is required")
    return mapping[key]
