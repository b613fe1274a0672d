"""Wire formats ⇄ engine values. No transport imports: edges pass bytes in and out."""
