"""Auth-state stores: where engine credentials live, encrypted and checksummed."""
