"""Scripts and the helper modules they share; not part of the installed
package. Tools import :mod:`rexnet_det`; the package never imports them."""
