"""The benchmark's prompt: about 6 KB of ordinary Python, cut off mid-function the way an IDE
sends the text before the cursor.

It holds no credential, so by default the secret scan runs over the whole text and finds
nothing (the common case on the hot path). `with_secret` plants one AWS access key id that the
default policy redacts, to measure the redaction path instead.
"""

from __future__ import annotations

PROMPT = '''"""Order service: pricing, stock reservation and the HTTP handlers around them."""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

CENT = decimal.Decimal("0.01")


class OrderStatus(enum.Enum):
    DRAFT = "draft"
    RESERVED = "reserved"
    PAID = "paid"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price: decimal.Decimal
    discount_rate: decimal.Decimal = decimal.Decimal("0")

    def total(self) -> decimal.Decimal:
        gross = self.unit_price * self.quantity
        discount = (gross * self.discount_rate).quantize(CENT)
        return (gross - discount).quantize(CENT)


@dataclasses.dataclass
class Order:
    order_id: str
    customer_id: str
    items: list[LineItem]
    status: OrderStatus = OrderStatus.DRAFT
    created_at: float = dataclasses.field(default_factory=time.time)
    notes: list[str] = dataclasses.field(default_factory=list)

    def subtotal(self) -> decimal.Decimal:
        return sum((item.total() for item in self.items), decimal.Decimal("0"))

    def tax(self, rate: decimal.Decimal) -> decimal.Decimal:
        return (self.subtotal() * rate).quantize(CENT)

    def grand_total(self, tax_rate: decimal.Decimal) -> decimal.Decimal:
        return self.subtotal() + self.tax(tax_rate)


class TTLCache(Generic[K, V]):
    """A small LRU cache whose entries expire after `ttl` seconds."""

    def __init__(self, capacity: int = 1024, ttl: float = 30.0) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._ttl = ttl
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K, default: V | None = None) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return default
        expires, value = entry
        if expires < time.monotonic():
            del self._data[key]
            self.misses += 1
            return default
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = (time.monotonic() + self._ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._capacity:
            self._data.popitem(last=False)


class StockError(RuntimeError):
    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"only {available} of {sku} left, {wanted} requested")
        self.sku = sku
        self.wanted = wanted
        self.available = available


class Inventory:
    def __init__(self, levels: dict[str, int]) -> None:
        self._levels = dict(levels)
        self._reserved: dict[str, dict[str, int]] = {}
        self._lock = asyncio.Lock()

    def available(self, sku: str) -> int:
        held = sum(r.get(sku, 0) for r in self._reserved.values())
        return self._levels.get(sku, 0) - held

    async def reserve(self, order: Order) -> None:
        async with self._lock:
            for item in order.items:
                left = self.available(item.sku)
                if left < item.quantity:
                    raise StockError(item.sku, item.quantity, left)
            self._reserved[order.order_id] = {i.sku: i.quantity for i in order.items}
            order.status = OrderStatus.RESERVED


async def retry(
    action: Callable[[], Awaitable[V]],
    *,
    attempts: int = 3,
    base_delay: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
) -> V:
    """Run `action`, retrying transient failures with exponential backoff."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return await action()
        except retry_on as exc:
            if attempt == attempts:
                raise
            log.warning("attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class PriceBook:
    def __init__(self, loader: Callable[[str], Awaitable[decimal.Decimal]]) -> None:
        self._loader = loader
        self._cache: TTLCache[str, decimal.Decimal] = TTLCache(capacity=4096, ttl=60.0)

    async def price(self, sku: str) -> decimal.Decimal:
        cached = self._cache.get(sku)
        if cached is not None:
            return cached
        value = await retry(lambda: self._loader(sku))
        self._cache.put(sku, value)
        return value


class OrderService:
    def __init__(self, inventory: Inventory, prices: PriceBook, tax_rate: str = "0.2") -> None:
        self._inventory = inventory
        self._prices = prices
        self._tax_rate = decimal.Decimal(tax_rate)
        self._orders: dict[str, Order] = {}

    async def draft(self, order_id: str, customer_id: str, lines: dict[str, int]) -> Order:
        items = []
        for sku, quantity in sorted(lines.items()):
            if quantity <= 0:
                raise ValueError(f"quantity for {sku} must be positive")
            items.append(LineItem(sku, quantity, await self._prices.price(sku)))
        order = Order(order_id, customer_id, items)
        self._orders[order_id] = order
        return order

    async def place(self, order_id: str) -> dict[str, Any]:
        order = self._orders[order_id]
        await self._inventory.reserve(order)
        return {
            "order_id": order.order_id,
            "status": order.status.value,
            "subtotal": str(order.subtotal()),
            "tax": str(order.tax(self._tax_rate)),
            "total": str(order.grand_total(self._tax_rate)),
        }

    def find_stale_drafts(self, max_age: float) -> list[Order]:
        cutoff = time.time() - max_age
        stale = []
        for order in self._orders.values():
            if order.status is OrderStatus.DRAFT and order.created_at < cutoff:
'''

# An AWS access key id in AWS's documented example format, which the default policy redacts.
SECRET_LINE = '    AWS_ACCESS_KEY_ID = "AKIAQ3EGRT7XBPLJ4MNV"\n'


def with_secret(prompt: str = PROMPT) -> str:
    """The prompt with one credential planted near the top (redacted by the default policy)."""
    head, sep, tail = prompt.partition("\nclass OrderStatus")
    return head + "\n\nclass Settings:\n" + SECRET_LINE + sep + tail


# A short prompt for the tiny model behind vLLM, whose context is 1024 tokens.
SMOKE_PROMPT = '''def moving_average(values: list[float], window: int) -> list[float]:
    """Average of each `window` consecutive values."""
    if window <= 0:
        raise ValueError("window must be positive")
    result = []
    total = 0.0
    for index, value in enumerate(values):
'''
