"""Shuhi (守秘): a confidentiality gateway for AI APIs."""
