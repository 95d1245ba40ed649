"""The game of one scenario, unbatched: the devices' best response and admission, the
market at given prices, Algorithm 1 and its fast-forward, the certificate, ``solve``."""
