# The explorer in a container. It binds 0.0.0.0 here only because the
# container's own network is private; publish the port on 127.0.0.1.
FROM python:3.11-slim

WORKDIR /srv/relmem
COPY pyproject.toml README.md ./
COPY models ./models
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir -e .

ENV RELMEM_HOST=0.0.0.0 \
    RELMEM_PORT=8000 \
    RELMEM_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
CMD ["relmem", "serve"]
