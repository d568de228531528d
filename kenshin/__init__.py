"""kenshin."""
