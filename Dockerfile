# clicktrail: one image for every role (serve, ingest, attribute, migrate); the command picks the role.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY clicktrail ./clicktrail
COPY redirector ./redirector
COPY attribution ./attribution
COPY core ./core
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/clicktrail --create-home clicktrail
COPY --from=build /install /usr/local
USER 10001
WORKDIR /var/lib/clicktrail
ENV CLICKTRAIL_DATA_DIR=/var/lib/clicktrail \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["clicktrail"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
