"""Trading symbols in ccxt's unified form: ``BASE/QUOTE`` or ``BASE/QUOTE:SETTLE``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ASSET = r"[A-Z0-9]{1,20}"
_UNIFIED = re.compile(rf"^(?P<base>{_ASSET})/(?P<quote>{_ASSET})(?::(?P<settle>{_ASSET}))?$")

# Quote assets used to split exchange ids such as ``BTCUSDT``; longest first so that
# ``USDT`` wins over ``USD`` and ``FDUSD`` over ``USD``.
KNOWN_QUOTES: tuple[str, ...] = tuple(
    sorted(
        (
            "USDT",
            "USDC",
            "FDUSD",
            "TUSD",
            "BUSD",
            "USD",
            "DAI",
            "BTC",
            "ETH",
            "BNB",
            "EUR",
            "GBP",
            "TRY",
            "BRL",
            "JPY",
            "AUD",
            "USDP",
            "UST",
            "PAX",
            "XRP",
            "DOGE",
            "TRX",
            "SOL",
        ),
        key=len,
        reverse=True,
    )
)


@dataclass(frozen=True, slots=True, order=True)
class Symbol:
    """A market, e.g. ``Symbol("BTC", "USDT")``; ``settle`` is set for derivatives."""

    base: str
    quote: str
    settle: str | None = None

    def __post_init__(self) -> None:
        for name in ("base", "quote"):
            value = getattr(self, name)
            if not re.fullmatch(_ASSET, value):
                raise ValueError(f"symbol {name} {value!r} must be 1-20 upper-case letters/digits")
        if self.settle is not None and not re.fullmatch(_ASSET, self.settle):
            raise ValueError(
                f"symbol settle {self.settle!r} must be 1-20 upper-case letters/digits"
            )

    @classmethod
    def parse(cls, text: str | Symbol) -> Symbol:
        """Parse ccxt form (``BTC/USDT``, ``BTC/USDT:USDT``); case-insensitive."""
        if isinstance(text, Symbol):
            return text
        match = _UNIFIED.match(str(text).strip().upper())
        if match is None:
            raise ValueError(
                f"symbol {text!r} is not in ccxt form; write it as BASE/QUOTE, e.g. BTC/USDT"
            )
        return cls(match["base"], match["quote"], match["settle"])

    @classmethod
    def from_exchange_id(cls, text: str) -> Symbol:
        """Split an exchange's concatenated id (``BTCUSDT``) at a known quote asset."""
        raw = text.strip().upper().replace("-", "").replace("_", "")
        for quote in KNOWN_QUOTES:
            if raw.endswith(quote) and len(raw) > len(quote):
                return cls(raw[: -len(quote)], quote)
        raise ValueError(
            f"cannot split {text!r} into base and quote (known quotes: {', '.join(KNOWN_QUOTES)});"
            " give the symbol explicitly, e.g. --symbol BTC/USDT"
        )

    @classmethod
    def resolve(cls, text: str, known: Iterable[Symbol] = ()) -> Symbol:
        """A symbol as a user types it: ``BTC/USDT``, ``btc/usdt``, ``BTCUSDT``, ``btcusdt``,
        ``BTC-USDT`` or ``BTC_USDT``.

        The slash form is parsed as is. A form without a slash is matched against ``known``
        (e.g. the store's symbols) first, then split at a known quote asset; when it can be
        split in more than one way (``BTCBUSD``: BTC/BUSD or BTCB/USD) it is refused with the
        candidates. ``ValueError`` says the expected form otherwise.
        """
        raw = str(text).strip().upper()
        if "/" in raw:
            return cls.parse(raw)
        compact = raw.replace("-", "").replace("_", "")
        matches = sorted({s for s in known if s.settle is None and s.exchange_id == compact})
        if len(matches) == 1:
            return matches[0]
        if not matches:
            matches = [
                cls(compact[: -len(q)], q)
                for q in KNOWN_QUOTES
                if compact.endswith(q) and len(compact) > len(q) and len(compact) - len(q) <= 20
            ]
            if len(matches) == 1:
                return matches[0]
        if len(matches) > 1:
            options = " or ".join(str(m) for m in matches)
            raise ValueError(f"symbol {text!r} is ambiguous ({options}); write it as BASE/QUOTE")
        raise ValueError(
            f"symbol {text!r} is not in a form pivotal reads; write it as BASE/QUOTE, e.g. "
            "BTC/USDT (BTCUSDT also works when it ends in a known quote asset such as USDT, "
            "USDC, BTC or EUR)"
        )

    @property
    def exchange_id(self) -> str:
        """Binance-style concatenated id, ``BTCUSDT``."""
        return f"{self.base}{self.quote}"

    @property
    def file_stem(self) -> str:
        """freqtrade's file-name form, ``BTC_USDT`` (``BTC_USDT_USDT`` for derivatives)."""
        stem = f"{self.base}_{self.quote}"
        return f"{stem}_{self.settle}" if self.settle else stem

    def __str__(self) -> str:
        text = f"{self.base}/{self.quote}"
        return f"{text}:{self.settle}" if self.settle else text
