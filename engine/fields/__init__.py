"""Neural fields: hash-grid encoding (torch = tiny-cuda-nn formulas), MLPs, the texture field."""
