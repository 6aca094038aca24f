"""The test suite. Fixtures are in the conftests, helper functions and classes in tests/helpers/."""

import pytest

# Before any helper is imported (this package comes first): a failing assert in a helper then
# shows its values, as one in a test or a conftest does.
pytest.register_assert_rewrite("tests.helpers")
