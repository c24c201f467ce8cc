"""The router config in force: the one place that the admin API, reloads and SIGHUP
change, and that the request handlers read.

Only the named routers and the health settings change while the router runs; engines,
providers, keys and limits are read at start and need a restart. A change is validated
as a whole config would be (conditions compile, weights sum to 100, models exist) and
then put in force with one assignment per object: a request in flight keeps the routing
table it started with, and an invalid change leaves everything as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from switchyard.router.config import ConfigError, RouterConfig, parse_config, read_config_data
from switchyard.router.routing.health import HealthBoard
from switchyard.router.routing.table import RoutingTable

log = logging.getLogger(__name__)


class ConfigStore:
    def __init__(self, config: RouterConfig, health: HealthBoard, path: str | None) -> None:
        """``health`` is the board whose settings follow the config's; ``path`` is the
        file reloads read, None when the config did not come from a file."""
        self.config = config
        self.path = path
        # The config as data, what changes are validated against.
        self.data: dict[str, Any] = config.model_dump(mode="json")
        self.routing = RoutingTable(config.routers)
        self._health = health

    def _apply(self, config: RouterConfig, data: dict[str, Any]) -> None:
        """Put a validated config's routers and health settings in force."""
        self.routing = RoutingTable(config.routers)
        self._health.failure_threshold = config.health.failure_threshold
        self._health.cooldown_s = config.health.cooldown_s
        self.config = self.config.model_copy(
            update={"routers": config.routers, "health": config.health}
        )
        self.data = {**self.data, "routers": data.get("routers") or {}}
        if "health" in data:
            self.data["health"] = data["health"]

    def replace_routers(self, routers: dict[str, Any]) -> None:
        """Put these routers in force instead of the current ones; raises ConfigError,
        changing nothing, if the config with them is invalid."""
        data = {**self.data, "routers": routers}
        self._apply(parse_config(data), data)

    def reload(self) -> None:
        """Re-read the config file; raises ConfigError, changing nothing, if it is bad."""
        if self.path is None:
            raise ConfigError("the router was not started from a config file")
        data = read_config_data(self.path)
        config = parse_config(data)
        assert isinstance(data, dict)  # parse_config refuses anything else
        restart = sorted(
            key
            for key in {*data, *self.data} - {"routers", "health"}
            if getattr(config, key, None) != getattr(self.config, key, None)
        )
        if restart:
            log.warning("reload: changes to %s take effect at the next restart", restart)
        self._apply(config, data)
        log.info("reload: %d routers in force", len(config.routers))

    def reload_or_log(self) -> None:
        """Reload where nobody waits for the answer (SIGHUP): a bad file is logged and
        changes nothing."""
        try:
            self.reload()
        except ConfigError as error:
            log.error("reload refused, the routers in force are kept: %s", error)
