from __future__ import annotations

from typing import Any

from ray._private.runtime_env.plugin import RuntimeEnvPlugin

from runenv.ray import translate


class RunenvPlugin(RuntimeEnvPlugin):
    name = "runenv"
    priority = 90

    @staticmethod
    def validate(runtime_env_dict: dict[str, Any]) -> None:
        return None

    def get_uris(self, runtime_env: Any) -> list[str]:
        return []

    async def create(self, uri: str | None, runtime_env: Any, context: Any, logger: Any) -> float:
        return 0

    def modify_context(self, uris: list[str], runtime_env: Any, context: Any, logger: Any) -> None:
        field = runtime_env["runenv"]
        context.env_vars.update(field.get("env_vars", {}))
        context.env_vars[translate.ACTIVE_VARIABLE] = translate.plugin_key(field)
