"""Operations: the docker-manifest commands and the bulk publish."""
