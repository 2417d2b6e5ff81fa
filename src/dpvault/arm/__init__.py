"""The ARM protocol: routing by case-insensitive segments, api-versions, names and ids, CloudError
responses, long-running-operation headers and paging. Nothing here knows about backups.
"""
